//! Code generation of what a create fills in (auto keys, confidence initials) and of the
//! local helper traits whose bounds check those fields' types.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::Gen;
use crate::kind::Kind;

impl<'a> Gen<'a> {
    /// Popoto stores an unset `ConfidenceField` as its `initial_confidence`; `Default` cannot
    /// know it, so a create turns a confidence field still at `0.0` into `initial`.
    pub(super) fn gen_fill_confidence_initials(&self) -> TokenStream {
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

    pub(super) fn gen_fill_auto_keys(&self) -> TokenStream {
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
    /// Local helper traits whose bounds give `auto_key` and `confidence` types their errors.
    pub(super) fn gen_type_checks(&self) -> TokenStream {
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
