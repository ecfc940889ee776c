//! The derive's internal model of a struct: its fields, their kinds, and the spans to blame.
//!
//! Nothing after this module reads `syn::Attribute`s.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

use crate::attr::{self, Ctxt};
use crate::kind::Kind;

/// A struct deriving `Model`.
pub(crate) struct Container<'a> {
    /// The struct's name.
    pub(crate) ident: &'a Ident,
    /// Redis class name.
    pub(crate) name: String,
    /// Path to the popoto crate.
    pub(crate) crate_path: syn::Path,
    /// Fields in declaration order (the `expire_at` field excepted: it is not stored).
    pub(crate) fields: Vec<Field<'a>>,
    /// The `#[popoto(expire_at)]` field, if any (more than one is an error).
    pub(crate) expire_at: Option<Field<'a>>,
    /// `ttl = seconds`.
    pub(crate) ttl: Option<u64>,
    /// Span of `#[popoto(shared)]`: instances may be shared across tenants.
    pub(crate) shared: Option<Span>,
    /// Span of `#[popoto(change_feed)]`: writes append change events.
    pub(crate) change_feed: Option<Span>,
}

/// One named field of the struct.
pub(crate) struct Field<'a> {
    /// The field as written (`r#type` stays raw).
    pub(crate) ident: &'a Ident,
    /// Hash field name: the identifier without `r#`.
    pub(crate) name: String,
    /// The field's type.
    pub(crate) ty: &'a Type,
    /// The field's kind.
    pub(crate) kind: Kind,
    /// Span of `tenant`, when the field is the tenant.
    pub(crate) tenant: Option<Span>,
    /// Span of `per_tenant`, when the field is a unique key unique within its tenant.
    pub(crate) per_tenant: Option<Span>,
    /// Span of `version`, when the field is the model's version.
    pub(crate) version: Option<Span>,
    /// Span of `expire_at`, when the field is the instance's expiry time.
    pub(crate) expire_at: Option<Span>,
    /// Names given to `partition_by`, with their literals for error spans.
    pub(crate) partition_by: Vec<LitStr>,
    /// `partition_by` resolved to field indices (filled by `check`).
    pub(crate) partition_indices: Vec<usize>,
}

impl<'a> Container<'a> {
    /// Builds the model of `input`, or `None` if its shape cannot be a model (errors in `cx`).
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = attr::Container::from_ast(cx, &input.attrs);

        if !input.generics.params.is_empty() {
            cx.error_spanned_by(
                &input.generics,
                "`#[derive(Model)]` does not support generic structs: a model has one fixed Redis layout",
            );
        } else if let Some(where_clause) = &input.generics.where_clause {
            cx.error_spanned_by(
                where_clause,
                "`#[derive(Model)]` does not support where clauses",
            );
        }

        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(unnamed) => {
                    cx.error_spanned_by(
                        unnamed,
                        "`#[derive(Model)]` needs named fields: each field is a hash field named like it",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error(
                        input.ident.span(),
                        "`#[derive(Model)]` needs a struct with named fields, not a unit struct",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error(
                    data.enum_token.span,
                    "`#[derive(Model)]` only supports structs with named fields, not enums",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error(
                    data.union_token.span,
                    "`#[derive(Model)]` only supports structs with named fields, not unions",
                );
                return None;
            }
        };

        let all: Vec<Field<'a>> = named
            .named
            .iter()
            .filter_map(|field| {
                let ident = field.ident.as_ref()?;
                let attrs = attr::Field::from_ast(cx, &field.attrs);
                Some(Field {
                    ident,
                    name: ident.unraw().to_string(),
                    ty: &field.ty,
                    kind: attrs.kind,
                    tenant: attrs.tenant,
                    per_tenant: attrs.per_tenant,
                    version: attrs.version,
                    expire_at: attrs.expire_at,
                    partition_by: attrs.partition_by,
                    partition_indices: Vec::new(),
                })
            })
            .collect();
        // The expiry time is not a popoto field: kept apart, so field indices stay popoto's.
        let (expiring, fields): (Vec<Field<'a>>, Vec<Field<'a>>) =
            all.into_iter().partition(|f| f.expire_at.is_some());
        let mut expiring = expiring.into_iter();
        let expire_at = expiring.next();
        if let Some(first) = &expire_at {
            for other in expiring {
                if let Some(span) = other.expire_at {
                    cx.error(
                        span,
                        format!(
                            "a model has at most one `expire_at` field, and `{}` already is",
                            first.name
                        ),
                    );
                }
            }
        }

        let name = attrs
            .name
            .map_or_else(|| input.ident.unraw().to_string(), |lit| lit.value());
        let crate_path = attrs
            .crate_path
            .unwrap_or_else(|| syn::parse_quote!(::popoto));

        Some(Container {
            ident: &input.ident,
            name,
            crate_path,
            fields,
            expire_at,
            ttl: attrs.ttl,
            shared: attrs.shared,
            change_feed: attrs.change_feed,
        })
    }

    /// Whether no key field is declared, so popoto's hidden `_auto_key` is added.
    pub(crate) fn has_hidden_key(&self) -> bool {
        !self.fields.iter().any(|f| f.kind.is_key())
    }
}
