//! `#[derive(Model)]` for popoto. Internal to popoto: use it through the `popoto` crate.
//!
//! The derive runs in four steps, one module each: `attr` parses `#[popoto(...)]` attributes,
//! `ast` builds the internal model of the struct, `check` applies the rules that involve
//! several fields, and `expand` generates the code. Every error is collected and reported at
//! the offending token.

mod ast;
mod attr;
mod check;
mod expand;
mod kind;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Derives `popoto::Model` for a struct with named fields.
///
/// Container attributes (all optional):
/// - `#[popoto(name = "Episode")]`: the Redis class name (default: the struct's name).
/// - `#[popoto(crate = "path::to::popoto")]`: where the popoto crate is (default: `::popoto`).
/// - `#[popoto(shared)]`: instances may be shared across tenants (`popoto::shared`); the model
///   has no tenant field.
/// - `#[popoto(change_feed)]`: every write of an instance appends a change event to its
///   tenant's stream in the same script call (`popoto::feed`); the model has a tenant field.
///
/// Field attributes (all optional):
/// - `key`, `unique_key`, `auto_key` (a `String` filled with a uuid4 hex when empty): the field
///   is part of the instance key; key segments are ordered by field name.
/// - `tenant` (with `key`, on a `String`): the field holding the tenant id; at most one.
/// - `per_tenant` (with `unique_key`, in a model with a tenant field): the value is unique
///   within each tenant instead of across the model (same layout as popoto's `UniqueKeyField`).
/// - `sorted`: the field's score is indexed in a sorted set.
/// - `confidence` or `confidence(initial = 0.5, evidence_cap = 20)`: a Popoto
///   `ConfidenceField` on an `f64`.
/// - `partition_by = "a"` or `partition_by("a", "b")` (on `sorted` or `confidence` fields):
///   one index per value of the named fields.
///
/// A field is at most one of `key`, `unique_key`, `auto_key`, `sorted`, `confidence`. A model
/// without a key field gets popoto's hidden `_auto_key`.
#[proc_macro_derive(Model, attributes(popoto))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    expand::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
