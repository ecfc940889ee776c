//! Code generation of the items that name fields and keys: field handles, `key_of` and
//! `key_builder`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::Gen;
use crate::check::HIDDEN_KEY;
use crate::kind::Kind;

impl Gen<'_> {
    pub(super) fn gen_handles(&self) -> TokenStream {
        let private = &self.private;
        let model = self.cont.ident;
        let handles = self.cont.fields.iter().enumerate().map(|(i, f)| {
            let ident = f.ident;
            let ty = f.ty;
            let (handle, new, what) = match f.kind {
                Kind::Plain => (quote!(Field), quote!(field), "plain field"),
                Kind::Key => (quote!(KeyField), quote!(key_field), "key field"),
                Kind::UniqueKey if f.per_tenant.is_some() => (
                    quote!(KeyField),
                    quote!(key_field),
                    "unique key field (unique within its tenant)",
                ),
                Kind::UniqueKey => (quote!(KeyField), quote!(key_field), "unique key field"),
                Kind::AutoKey => (quote!(KeyField), quote!(key_field), "auto key field"),
                Kind::Sorted => (quote!(SortedField), quote!(sorted_field), "sorted field"),
                Kind::Confidence { .. } => (
                    quote!(ConfidenceField),
                    quote!(confidence_field),
                    "confidence field",
                ),
            };
            let tenant = if f.tenant.is_some() {
                " (the tenant)"
            } else {
                ""
            };
            let doc = format!(" Handle of the {what} `{}`{tenant}.", f.name);
            quote! {
                #[doc = #doc]
                pub const fn #ident() -> #private::#handle<#model, #ty> {
                    #private::#new(#i)
                }
            }
        });
        quote!(#(#handles)*)
    }

    /// `key_builder()` and its typestate builder: one setter per key field (named like it),
    /// each callable once, and `build` once every one is set, so key values are given by name
    /// and none can be missing or swapped (a compile error otherwise).
    pub(super) fn gen_key_builder(&self) -> (TokenStream, TokenStream) {
        let private = &self.private;
        let model = self.cont.ident;
        let builder = format_ident!("{}KeyBuilder", model);
        let n = self.key_fields.len();
        let params: Vec<Ident> = (0..n).map(|p| format_ident!("P{}", p)).collect();
        let unset = vec![quote!(false); n];
        let all_set = vec![quote!(true); n];
        let empty = (0..n).map(|_| quote!(::std::string::String::new()));
        let doc = format!(
            " A builder of a `{model}` key: each key field by name, in any order, each once; \
             `build` exists once all are set."
        );
        let builder_doc = format!(
            " The key of a `{model}` being built (`{model}::key_builder()`): the const \
             parameters say which key fields are set."
        );
        let setters = self.key_fields.iter().enumerate().map(|(pos, &i)| {
            let (ident, ty, name) = if self.hidden {
                (
                    format_ident!("auto_key"),
                    quote!(::std::string::String),
                    HIDDEN_KEY.to_owned(),
                )
            } else {
                let f = &self.cont.fields[i];
                let ty = f.ty;
                (f.ident.clone(), quote!(#ty), f.name.clone())
            };
            let others: Vec<&Ident> = params
                .iter()
                .enumerate()
                .filter(|(p, _)| *p != pos)
                .map(|(_, id)| id)
                .collect();
            let before: Vec<TokenStream> = params
                .iter()
                .enumerate()
                .map(|(p, id)| if p == pos { quote!(false) } else { quote!(#id) })
                .collect();
            let after: Vec<TokenStream> = params
                .iter()
                .enumerate()
                .map(|(p, id)| if p == pos { quote!(true) } else { quote!(#id) })
                .collect();
            let doc = format!(" Sets the key field `{name}`.");
            quote! {
                #[automatically_derived]
                impl<#(const #others: bool),*> #builder<#(#before),*> {
                    #[doc = #doc]
                    pub fn #ident(
                        mut self,
                        value: impl ::core::convert::Into<#ty>,
                    ) -> #builder<#(#after),*> {
                        self.segments[#pos] = #private::segment::<#ty>(
                            &::core::convert::Into::<#ty>::into(value),
                        );
                        #builder { segments: self.segments }
                    }
                }
            }
        });
        let builder_fn = quote! {
            #[doc = #doc]
            pub fn key_builder() -> #builder<#(#unset),*> {
                #builder { segments: [#(#empty),*] }
            }
        };
        let builder_def = quote! {
            #[doc = #builder_doc]
            #[must_use = "a key builder does nothing until `build`"]
            pub struct #builder<#(const #params: bool),*> {
                segments: [::std::string::String; #n],
            }

            #(#setters)*

            #[automatically_derived]
            impl #builder<#(#all_set),*> {
                /// The key, every key field set.
                pub fn build(self) -> #private::Key<#model> {
                    #private::key(::std::vec::Vec::from(self.segments))
                }
            }
        };
        (builder_fn, builder_def)
    }

    pub(super) fn gen_key_of(&self) -> TokenStream {
        let private = &self.private;
        let model = self.cont.ident;
        let into = quote!(::core::convert::Into);
        let fields = &self.cont.fields;
        let (params, segments, names): (Vec<_>, Vec<_>, Vec<_>) = if self.hidden {
            let param = format_ident!("auto_key");
            (
                vec![quote!(#param: impl #into<::std::string::String>)],
                vec![quote!(#into::<::std::string::String>::into(#param))],
                vec![HIDDEN_KEY.to_owned()],
            )
        } else {
            let params = fields.iter().filter(|f| f.kind.is_key()).map(|f| {
                let ident = f.ident;
                let ty = f.ty;
                quote!(#ident: impl #into<#ty>)
            });
            let segments = self.key_fields.iter().map(|&i| {
                let f = &fields[i];
                let ident = f.ident;
                let ty = f.ty;
                self.segment(f, quote!(&#into::<#ty>::into(#ident)))
            });
            let names = self.key_fields.iter().map(|&i| fields[i].name.clone());
            (params.collect(), segments.collect(), names.collect())
        };
        let names = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let doc = format!(
            " The key of the `{model}` whose key fields have these values (key order: {names})."
        );
        quote! {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            pub fn key_of(#(#params),*) -> #private::Key<#model> {
                #private::key(::std::vec![#(#segments),*])
            }
        }
    }
}
