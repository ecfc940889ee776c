//! Code generation of the model's metadata (`META`) and of the accessors of its tenant and
//! version fields.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::Gen;
use crate::ast::Field;
use crate::check::HIDDEN_KEY;
use crate::kind::Kind;

impl<'a> Gen<'a> {
    pub(super) fn gen_meta(&self) -> TokenStream {
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
    pub(super) fn gen_version(&self) -> TokenStream {
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

    pub(super) fn gen_tenant(&self) -> TokenStream {
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
}
