//! Code generation: `impl Model`, the field handles and `key_of`. This module assembles the
//! output; `meta` generates the metadata, `record` the encoding and decoding, `fill` what a
//! create fills in, `keys` the handles and key builders.
//!
//! Everything is wrapped in `const _: () = { ... };` and reaches the runtime through absolute
//! paths into `<crate>::__private`. Type requirements (a key type renders as a key segment, a
//! sorted type has a score, ...) are expressed as trait bounds spanned at the field's type, so
//! a violation is reported there with the trait's own message.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Type};

use crate::ast::{Container, Field};
use crate::attr::Ctxt;
use crate::check::{self, HIDDEN_KEY};

mod fill;
mod keys;
mod meta;
mod record;

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
}
