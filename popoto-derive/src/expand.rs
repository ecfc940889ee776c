//! Code generation: `impl Model`, the field handles and `key_of`.
//!
//! Everything is wrapped in `const _: () = { ... };` and reaches the runtime through absolute
//! paths into `<crate>::__private`. Type requirements (a key type renders as a key segment, a
//! sorted type has a score, ...) are expressed as trait bounds spanned at the field's type, so
//! a violation is reported there with the trait's own message.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Type};

use crate::ast::{Container, Field, Kind};
use crate::attr::Ctxt;
use crate::check::{self, HIDDEN_KEY};

mod keys;

/// Expands `#[derive(Model)]` on `input`.
pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let cx = Ctxt::new();
    let mut cont = Container::from_ast(&cx, &input);
    if let Some(cont) = &mut cont {
        check::check(&cx, cont);
    }
    cx.check()?;
    match cont {
        Some(cont) => Ok(Gen::new(&cont).expand()),
        None => Err(syn::Error::new(
            Span::call_site(),
            "`#[derive(Model)]` cannot be derived for this item",
        )),
    }
}

/// Everything codegen needs to know, computed once.
struct Gen<'a> {
    cont: &'a Container<'a>,
    /// `<crate>`.
    krate: &'a syn::Path,
    /// `<crate>::__private`.
    private: TokenStream,
    /// Whether the hidden `_auto_key` is appended (it then has index `fields.len()`).
    hidden: bool,
    /// Key field indices in instance-key order (alphabetical by name).
    key_fields: Vec<usize>,
    /// Per declared field: whether it renders a key segment (key or partition field).
    segmented: Vec<bool>,
}

impl<'a> Gen<'a> {
    fn new(cont: &'a Container<'a>) -> Self {
        let krate = &cont.crate_path;
        let hidden = cont.has_hidden_key();
        let mut key_fields: Vec<usize> = if hidden {
            vec![cont.fields.len()]
        } else {
            (0..cont.fields.len())
                .filter(|&i| cont.fields[i].kind.is_key())
                .collect()
        };
        key_fields.sort_by(|&a, &b| {
            let name = |i: usize| cont.fields.get(i).map_or(HIDDEN_KEY, |f| f.name.as_str());
            name(a).as_bytes().cmp(name(b).as_bytes())
        });
        let mut segmented: Vec<bool> = cont.fields.iter().map(|f| f.kind.is_key()).collect();
        for field in &cont.fields {
            for &i in &field.partition_indices {
                segmented[i] = true;
            }
        }
        Gen {
            cont,
            krate,
            private: quote!(#krate::__private),
            hidden,
            key_fields,
            segmented,
        }
    }

    fn expand(&self) -> TokenStream {
        let ident = self.cont.ident;
        let private = &self.private;
        let meta = self.gen_meta();
        let to_record = self.gen_to_record();
        let from_hash = self.gen_from_hash();
        let fill_auto_keys = self.gen_fill_auto_keys();
        let fill_confidence_initials = self.gen_fill_confidence_initials();
        let tenant = self.gen_tenant();
        let segment_from_stored = self.gen_segment_from_stored();
        let version = self.gen_version();
        let type_checks = self.gen_type_checks();
        let handles = self.gen_handles();
        let key_of = self.gen_key_of();
        let (builder_fn, builder) = self.gen_key_builder();
        let change_feed = self.cont.change_feed.map(|_| {
            quote!(
                const CHANGE_FEED: bool = true;
            )
        });
        let shareable_const = self.cont.shared.map(|_| {
            quote!(
                const SHAREABLE: bool = true;
            )
        });
        let shareable = self.cont.shared.map(|_| {
            quote! {
                #[automatically_derived]
                impl #private::Shareable for #ident {}
            }
        });
        quote! {
            #[doc(hidden)]
            #[allow(non_upper_case_globals, unused_qualifications, clippy::absolute_paths)]
            const _: () = {
                #type_checks

                #[automatically_derived]
                impl #private::Model for #ident {
                    #meta
                    #change_feed
                    #shareable_const
                    #to_record
                    #from_hash
                    #fill_auto_keys
                    #fill_confidence_initials
                    #tenant
                    #segment_from_stored
                    #version
                }

                #shareable

                #[automatically_derived]
                impl #ident {
                    #handles
                    #key_of
                    #builder_fn
                }

                #builder
            };
        }
    }

    /// `<Self as Model>::META`.
    fn meta_path(&self) -> TokenStream {
        let private = &self.private;
        quote!(<Self as #private::Model>::META)
    }

    fn gen_meta(&self) -> TokenStream {
        let private = &self.private;
        let name = &self.cont.name;
        let mut fields: Vec<TokenStream> = self
            .cont
            .fields
            .iter()
            .map(|f| {
                let name = &f.name;
                let kind = self.kind(f.kind);
                let partition_by = &f.partition_indices;
                let per_tenant = f.per_tenant.is_some();
                quote! {
                    #private::FieldMeta {
                        name: #name,
                        kind: #kind,
                        partition_by: &[#(#partition_by),*],
                        hidden: false,
                        per_tenant: #per_tenant,
                    }
                }
            })
            .collect();
        if self.hidden {
            fields.push(quote! {
                #private::FieldMeta {
                    name: #HIDDEN_KEY,
                    kind: #private::FieldKind::AutoKey,
                    partition_by: &[],
                    hidden: true,
                    per_tenant: false,
                }
            });
        }
        let key_fields = &self.key_fields;
        let tenant = match self.tenant_field() {
            Some((i, _)) => quote!(::core::option::Option::Some(#i)),
            None => quote!(::core::option::Option::None),
        };
        let version = match self.version_field() {
            Some((i, _)) => quote!(::core::option::Option::Some(#i)),
            None => quote!(::core::option::Option::None),
        };
        let ttl = match self.cont.ttl {
            Some(s) => quote!(::core::option::Option::Some(#s)),
            None => quote!(::core::option::Option::None),
        };
        let expire_at = self.cont.expire_at.is_some();
        quote! {
            const META: &'static #private::ModelMeta = &#private::ModelMeta {
                name: #name,
                fields: &[#(#fields),*],
                key_fields: &[#(#key_fields),*],
                tenant: #tenant,
                version: #version,
                ttl: #ttl,
                expire_at: #expire_at,
            };
        }
    }

    fn kind(&self, kind: Kind) -> TokenStream {
        let private = &self.private;
        match kind {
            Kind::Plain => quote!(#private::FieldKind::Plain),
            Kind::Key => quote!(#private::FieldKind::Key),
            Kind::UniqueKey => quote!(#private::FieldKind::UniqueKey),
            Kind::AutoKey => quote!(#private::FieldKind::AutoKey),
            Kind::Sorted => quote!(#private::FieldKind::Sorted),
            Kind::Confidence {
                initial,
                evidence_cap,
            } => {
                let initial = Literal::f64_suffixed(initial);
                let evidence_cap = Literal::u32_suffixed(evidence_cap);
                quote!(#private::FieldKind::Confidence {
                    initial: #initial,
                    evidence_cap: #evidence_cap,
                })
            }
        }
    }

    fn tenant_field(&self) -> Option<(usize, &Field<'a>)> {
        self.cont
            .fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.tenant.is_some())
    }

    fn version_field(&self) -> Option<(usize, &Field<'a>)> {
        self.cont
            .fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.version.is_some())
    }

    /// `version`/`set_version`, for a model with a version field.
    fn gen_version(&self) -> TokenStream {
        let private = &self.private;
        let Some((_, f)) = self.version_field() else {
            return TokenStream::new();
        };
        let (ident, ty) = (f.ident, f.ty);
        let get = quote_spanned!(ty.span()=> <#ty as #private::VersionValue>::get(&self.#ident));
        let set = quote_spanned!(ty.span()=> <#ty as #private::VersionValue>::set(&mut self.#ident, version));
        quote! {
            fn version(&self) -> u64 {
                #get
            }
            fn set_version(&mut self, version: u64) {
                #set;
            }
        }
    }

    /// `segment::<T>(value)`, spanned at the field type so a missing `KeySegment` is blamed there.
    fn segment(&self, field: &Field, value: TokenStream) -> TokenStream {
        let private = &self.private;
        let ty = field.ty;
        quote_spanned!(ty.span()=> #private::segment::<#ty>(#value))
    }

    /// `(&Probe::<T>::new()).method(args)`, spanned at the field type so that a type popoto
    /// cannot store is blamed there.
    fn probe(&self, ty: &Type, method: &str, args: TokenStream) -> TokenStream {
        let private = &self.private;
        let method = Ident::new(method, ty.span());
        quote_spanned!(ty.span()=> (&#private::Probe::<#ty>::new()).#method(#args))
    }

    fn gen_to_record(&self) -> TokenStream {
        let private = &self.private;
        let meta = self.meta_path();
        let mut values = Vec::new();
        let mut segments = Vec::new();
        let mut scores = Vec::new();
        let mut encode = Vec::new();
        for (i, field) in self.cont.fields.iter().enumerate() {
            let ident = field.ident;
            let ty = field.ty;
            let buf = format_ident!("__value{}", i);
            let encode_field = self.probe(ty, "encode_field", quote!(&self.#ident, &mut #buf));
            encode.push(quote! {
                let mut #buf = ::std::vec::Vec::new();
                #encode_field.map_err(|e| #private::encode_error(#meta, #i, e))?;
            });
            values.push(buf);
            segments.push(if self.segmented[i] {
                let segment = self.segment(field, quote!(&self.#ident));
                quote!(::core::option::Option::Some(#segment))
            } else {
                quote!(::core::option::Option::None)
            });
            scores.push(if field.kind == Kind::Sorted {
                let score =
                    quote_spanned!(ty.span()=> <#ty as #private::Score>::score(&self.#ident));
                quote!(::core::option::Option::Some(#private::checked_score(#meta, #i, #score)?))
            } else {
                quote!(::core::option::Option::None)
            });
        }
        let expire_at = match &self.cont.expire_at {
            Some(f) => {
                let (ident, ty, name) = (f.ident, f.ty, &f.name);
                let millis = quote_spanned!(ty.span()=>
                    <#ty as #private::ExpiryValue>::expire_at_millis(&self.#ident));
                quote!(#millis.map_err(|e| #private::expiry_error(#meta, #name, e))?)
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            fn to_record(&self) -> #private::Result<#private::Record> {
                #[allow(unused_imports)]
                use #private::{ViaSerde as _, ViaValue as _};
                #(#encode)*
                ::core::result::Result::Ok(#private::Record {
                    values: ::std::vec![#(#values),*],
                    segments: ::std::vec![#(#segments),*],
                    scores: ::std::vec![#(#scores),*],
                    expire_at: #expire_at,
                })
            }
        }
    }

    fn gen_from_hash(&self) -> TokenStream {
        let private = &self.private;
        let meta = self.meta_path();
        let fields = &self.cont.fields;
        let slots: Vec<_> = (0..fields.len())
            .map(|i| format_ident!("__field{}", i))
            .collect();
        let declare = fields.iter().zip(&slots).map(|(f, slot)| {
            let ty = f.ty;
            quote!(let mut #slot: ::core::option::Option<#ty> = ::core::option::Option::None;)
        });
        let arms = fields.iter().zip(&slots).map(|(f, slot)| {
            let ty = f.ty;
            let name = &f.name;
            let bytes = Literal::byte_string(name.as_bytes());
            let decode_field = self.probe(ty, "decode_field", quote!(&value));
            quote! {
                #bytes => {
                    #slot = ::core::option::Option::Some(
                        #decode_field
                            .map_err(|e| #private::decode_error(#meta, key, #name, e))?,
                    );
                }
            }
        });
        let build = fields.iter().zip(&slots).map(|(f, slot)| {
            let ident = f.ident;
            let ty = f.ty;
            let name = &f.name;
            // A missing confidence field decodes to its `initial`, as Popoto fills it.
            let missing_field = match f.kind {
                Kind::Confidence { initial, .. } => {
                    let initial = Literal::f64_suffixed(initial);
                    quote_spanned!(ty.span()=> ::core::result::Result::<#ty, #private::DecodeError>::Ok(
                        <#ty as __PopotoConfidence>::initial(#initial)
                    ))
                }
                _ => self.probe(ty, "missing_field", quote!()),
            };
            quote! {
                #ident: match #slot {
                    ::core::option::Option::Some(v) => v,
                    ::core::option::Option::None => #missing_field
                        .map_err(|e| #private::decode_error(#meta, key, #name, e))?,
                }
            }
        });
        // The expiry time is not stored in the hash: a value read has none.
        let unread = self.cont.expire_at.iter().map(|f| {
            let (ident, ty) = (f.ident, f.ty);
            let private = &self.private;
            quote_spanned!(ty.span()=> #ident: <#ty as #private::ExpiryValue>::unread())
        });
        let build = build.chain(unread);
        let read = if fields.is_empty() {
            quote!(let _ = (key, fields);)
        } else {
            quote! {
                for (name, value) in fields {
                    // Legacy `<field>\x00idxset` entries (popoto before #476).
                    if name.contains(&0) {
                        continue;
                    }
                    match name.as_slice() {
                        #(#arms)*
                        _ => {}
                    }
                }
            }
        };
        quote! {
            fn from_hash(
                key: &str,
                fields: ::std::vec::Vec<(::std::vec::Vec<u8>, ::std::vec::Vec<u8>)>,
            ) -> #private::Result<Self> {
                #[allow(unused_imports)]
                use #private::{NoDefault as _, ViaDefault as _, ViaSerde as _, ViaValue as _};
                #(#declare)*
                #read
                ::core::result::Result::Ok(Self {
                    #(#build),*
                })
            }
        }
    }

    /// Popoto stores an unset `ConfidenceField` as its `initial_confidence`; `Default` cannot
    /// know it, so a create turns a confidence field still at `0.0` into `initial`.
    fn gen_fill_confidence_initials(&self) -> TokenStream {
        let fill = self.cont.fields.iter().filter_map(|f| match f.kind {
            Kind::Confidence { initial, .. } if initial != 0.0 => {
                let (ident, ty) = (f.ident, f.ty);
                let initial = Literal::f64_suffixed(initial);
                Some(quote_spanned!(ty.span()=>
                    <#ty as __PopotoConfidence>::fill_initial(&mut self.#ident, #initial);))
            }
            _ => None,
        });
        quote! {
            fn fill_confidence_initials(&mut self) {
                #(#fill)*
            }
        }
    }

    fn gen_fill_auto_keys(&self) -> TokenStream {
        let fill = self
            .cont
            .fields
            .iter()
            .filter(|f| f.kind == Kind::AutoKey)
            .map(|f| {
                let ident = f.ident;
                let ty = f.ty;
                quote_spanned!(ty.span()=> filled |= <#ty as __PopotoAutoKey>::fill(&mut self.#ident);)
            });
        quote! {
            fn fill_auto_keys(&mut self) -> bool {
                #[allow(unused_mut)]
                let mut filled = false;
                #(#fill)*
                filled
            }
        }
    }

    fn gen_tenant(&self) -> TokenStream {
        let private = &self.private;
        match self.tenant_field() {
            Some((_, f)) => {
                let ident = f.ident;
                let ty = f.ty;
                let get = quote_spanned!(ty.span()=> <#ty as #private::TenantValue>::tenant_id(&self.#ident));
                let set = quote_spanned!(ty.span()=> <#ty as #private::TenantValue>::set_tenant_id(&mut self.#ident, tenant));
                quote! {
                    fn tenant_id(&self) -> ::core::option::Option<&str> {
                        ::core::option::Option::Some(#get)
                    }
                    fn set_tenant_id(&mut self, tenant: &str) {
                        #set;
                    }
                }
            }
            None => quote! {
                fn tenant_id(&self) -> ::core::option::Option<&str> {
                    ::core::option::Option::None
                }
                fn set_tenant_id(&mut self, tenant: &str) {
                    let _ = tenant;
                }
            },
        }
    }

    fn gen_segment_from_stored(&self) -> TokenStream {
        let private = &self.private;
        let meta = self.meta_path();
        let mut arms: Vec<TokenStream> = Vec::new();
        for (i, field) in self.cont.fields.iter().enumerate() {
            if !self.segmented[i] {
                continue;
            }
            let ty = field.ty;
            let name = &field.name;
            let decode_field = self.probe(ty, "decode_field", quote!(raw));
            let segment = self.segment(field, quote!(&v));
            arms.push(quote! {
                #i => {
                    let v = #decode_field
                        .map_err(|e| #private::decode_error(#meta, key, #name, e))?;
                    ::core::result::Result::Ok(#segment)
                }
            });
        }
        if self.hidden {
            let i = self.cont.fields.len();
            arms.push(quote! {
                #i => {
                    let v = (&#private::Probe::<::std::string::String>::new())
                        .decode_field(raw)
                        .map_err(|e| #private::decode_error(#meta, key, #HIDDEN_KEY, e))?;
                    ::core::result::Result::Ok(v)
                }
            });
        }
        quote! {
            fn segment_from_stored(
                key: &str,
                field: usize,
                raw: &[u8],
            ) -> #private::Result<::std::string::String> {
                #[allow(unused_imports)]
                use #private::{ViaSerde as _, ViaValue as _};
                match field {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#private::Error::InvalidValue {
                        model: #meta.name,
                        field: match #meta.fields.get(field) {
                            ::core::option::Option::Some(f) => f.name,
                            ::core::option::Option::None => "?",
                        },
                        reason: ::std::format!(
                            "field {} is neither a key nor a partition field",
                            field
                        ),
                    }),
                }
            }
        }
    }

    /// Local helper traits whose bounds give `auto_key` and `confidence` types their errors.
    fn gen_type_checks(&self) -> TokenStream {
        let private = &self.private;
        let fields = &self.cont.fields;
        let mut out = TokenStream::new();
        if fields.iter().any(|f| f.kind == Kind::AutoKey) {
            out.extend(quote! {
                #[diagnostic::on_unimplemented(
                    message = "`{Self}` cannot be an auto key",
                    label = "`auto_key` fields must be `String`: popoto fills them with a uuid4 hex"
                )]
                trait __PopotoAutoKey {
                    fn fill(&mut self) -> bool;
                }

                impl __PopotoAutoKey for ::std::string::String {
                    #[inline]
                    fn fill(&mut self) -> bool {
                        let empty = self.is_empty();
                        if empty {
                            *self = #private::new_auto_key();
                        }
                        empty
                    }
                }
            });
        }
        let confidence: Vec<_> = fields
            .iter()
            .filter(|f| matches!(f.kind, Kind::Confidence { .. }))
            .map(|f| {
                let ty = f.ty;
                quote_spanned!(ty.span()=> const _: () = <#ty as __PopotoConfidence>::CHECKED;)
            })
            .collect();
        if !confidence.is_empty() {
            out.extend(quote! {
                #[diagnostic::on_unimplemented(
                    message = "`{Self}` cannot be a confidence field",
                    label = "`confidence` fields must be `f64`"
                )]
                trait __PopotoConfidence: ::core::marker::Sized {
                    const CHECKED: ();
                    fn initial(initial: f64) -> Self;
                    fn fill_initial(&mut self, initial: f64);
                }

                // An unset field is `initial`; at create, a field still at `0.0` takes it.
                impl __PopotoConfidence for f64 {
                    const CHECKED: () = ();
                    fn initial(initial: f64) -> Self {
                        initial
                    }
                    fn fill_initial(&mut self, initial: f64) {
                        if *self == 0.0 {
                            *self = initial;
                        }
                    }
                }

                #(#confidence)*
            });
        }
        out
    }
}
