//! Rules that look at more than one field. Single-field rules are checked while parsing.

use crate::ast::{Container, Field};
use crate::attr::{did_you_mean, Ctxt};

/// Name of the hidden key field popoto adds to models without a key field.
pub(crate) const HIDDEN_KEY: &str = "_auto_key";

/// Name of the generated key constructor.
pub(crate) const KEY_OF: &str = "key_of";

/// Name of the generated key builder.
pub(crate) const KEY_BUILDER: &str = "key_builder";

/// Checks the whole model and resolves `partition_by` names to field indices.
pub(crate) fn check(cx: &Ctxt, cont: &mut Container) {
    check_tenant(cx, cont);
    check_per_tenant(cx, cont);
    check_version(cx, cont);
    check_expiry(cx, cont);
    check_sharing(cx, cont);
    check_names(cx, cont);
    resolve_partitions(cx, cont);
}

/// At most one field is the tenant.
fn check_tenant(cx: &Ctxt, cont: &Container) {
    let mut tenants = cont.fields.iter().filter_map(|f| Some((f, f.tenant?)));
    if let Some((first, _)) = tenants.next() {
        for (_, span) in tenants {
            cx.error(
                span,
                format!(
                    "a model has at most one tenant field, and `{}` already is",
                    first.name
                ),
            );
        }
    }
}

/// A shared model lives outside every tenant, so it has no tenant field; the change feed of
/// private writes is a tenant's stream, so a model opting in has one.
fn check_sharing(cx: &Ctxt, cont: &Container) {
    let tenant = cont.fields.iter().find_map(|f| f.tenant);
    if let (Some(shared), Some(tenant)) = (cont.shared, tenant) {
        cx.error(
            shared,
            "a `shared` model lives outside every tenant and cannot have a `tenant` field",
        );
        cx.error(tenant, "the tenant field of a `shared` model");
    }
    if let (Some(feed), None) = (cont.change_feed, tenant) {
        cx.error(
            feed,
            "`change_feed` appends private writes to their tenant's stream: the model needs a `tenant` field",
        );
    }
}

/// A `per_tenant` unique key needs the model's tenant field: the tenant its values are unique in.
fn check_per_tenant(cx: &Ctxt, cont: &Container) {
    if cont.fields.iter().any(|f| f.tenant.is_some()) {
        return;
    }
    for span in cont.fields.iter().filter_map(|f| f.per_tenant) {
        cx.error(
            span,
            "`per_tenant` needs a tenant field to be unique in: mark one key field \
             `#[popoto(key, tenant)]`",
        );
    }
}

/// At most one field is the version, and no index is partitioned by it.
fn check_version(cx: &Ctxt, cont: &Container) {
    let mut versions = cont.fields.iter().filter_map(|f| Some((f, f.version?)));
    let Some((first, _)) = versions.next() else {
        return;
    };
    for (_, span) in versions {
        cx.error(
            span,
            format!(
                "a model has at most one version field, and `{}` already is",
                first.name
            ),
        );
    }
    for field in &cont.fields {
        for lit in &field.partition_by {
            if lit.value() == first.name {
                cx.error(
                    lit.span(),
                    format!(
                        "`{}` is the version field: it changes on every save and cannot \
                         partition an index",
                        first.name
                    ),
                );
            }
        }
    }
}

/// An expiring model partitions indexes by key fields only: once a hash has expired, its
/// index entries must be found from its key alone. (`partition_by` names are resolved later;
/// an unknown name is reported there.)
fn check_expiry(cx: &Ctxt, cont: &Container) {
    if cont.ttl.is_none() && cont.expire_at.is_none() {
        return;
    }
    for field in &cont.fields {
        for lit in &field.partition_by {
            let wanted = lit.value();
            let target = cont.fields.iter().find(|f| f.name == wanted);
            if target.is_some_and(|t| !t.kind.is_key()) {
                cx.error(
                    lit.span(),
                    format!(
                        "`{wanted}` is not a key field: in a model whose instances expire \
                         (`ttl`, `expire_at`), indexes are partitioned by key fields only, so an \
                         expired instance's entries are found from its key"
                    ),
                );
            }
        }
    }
}

/// Field names that would clash with generated items or popoto's hidden field.
fn check_names(cx: &Ctxt, cont: &Container) {
    let hidden = cont.has_hidden_key();
    for field in &cont.fields {
        if field.name == KEY_OF || field.name == KEY_BUILDER {
            cx.error(
                field.ident.span(),
                format!(
                    "a field cannot be named `{}`: the derive generates `{}` to build instance keys",
                    field.name, field.name
                ),
            );
        }
        if hidden && field.name == HIDDEN_KEY {
            cx.error(
                field.ident.span(),
                "`_auto_key` is the hidden key popoto adds to models without a key field; \
                 rename this field or mark a field `key`, `auto_key` or `unique_key`",
            );
        }
    }
}

/// Every `partition_by` name is another field of the struct, listed once.
fn resolve_partitions(cx: &Ctxt, cont: &mut Container) {
    let names: Vec<String> = cont.fields.iter().map(|f| f.name.clone()).collect();
    for (index, field) in cont.fields.iter_mut().enumerate() {
        field.partition_indices = resolve(cx, &names, index, field);
    }
}

fn resolve(cx: &Ctxt, names: &[String], own: usize, field: &Field) -> Vec<usize> {
    let mut indices: Vec<usize> = Vec::with_capacity(field.partition_by.len());
    for lit in &field.partition_by {
        let wanted = lit.value();
        match names.iter().position(|n| *n == wanted) {
            Some(i) if i == own => cx.error(
                lit.span(),
                format!("`{wanted}` cannot be partitioned by itself"),
            ),
            Some(i) if indices.contains(&i) => {
                cx.error(lit.span(), format!("duplicate partition field `{wanted}`"))
            }
            Some(i) => indices.push(i),
            None => {
                let candidates: Vec<&str> = names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != own)
                    .map(|(_, n)| n.as_str())
                    .collect();
                let msg = match did_you_mean(&wanted, &candidates) {
                    Some(c) => format!(
                        "`partition_by` names `{wanted}`, which is not a field of this struct; did you mean `{c}`?"
                    ),
                    None => format!(
                        "`partition_by` names `{wanted}`, which is not a field of this struct"
                    ),
                };
                cx.error(lit.span(), msg);
            }
        }
    }
    indices
}
