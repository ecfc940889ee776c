//! Code generation of the encoding and decoding of instances: `to_record`, `from_hash` and
//! `segment_from_stored`.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::Gen;
use crate::check::HIDDEN_KEY;
use crate::kind::Kind;

impl<'a> Gen<'a> {
    pub(super) fn gen_to_record(&self) -> TokenStream {
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

    pub(super) fn gen_from_hash(&self) -> TokenStream {
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

    pub(super) fn gen_segment_from_stored(&self) -> TokenStream {
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
}
