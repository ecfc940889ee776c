//! `#[popoto(...)]` attributes parsed into typed values.
//!
//! Parsing never stops at the first mistake: every error goes into a [`Ctxt`] and parsing goes
//! on with the next key, so the user sees all bad attributes of a struct at once. Rules that
//! concern a single field (one kind per field, `tenant` only with `key`, `partition_by` only on
//! sorted or confidence fields, confidence parameter ranges) are checked here; rules that look
//! at several fields live in `check.rs`.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::{Span, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, LitStr, Token};

use crate::kind::Kind;

mod values;

use values::{parse_confidence, parse_partition_by, parse_ttl};

/// Name of the attribute this derive reads.
const POPOTO: &str = "popoto";

// Container keys.
const NAME: &str = "name";
const CRATE: &str = "crate";
const TTL: &str = "ttl";
const SHARED: &str = "shared";
const CHANGE_FEED: &str = "change_feed";
const CONTAINER_KEYS: &[&str] = &[NAME, CRATE, TTL, SHARED, CHANGE_FEED];

// Field keys.
const KEY: &str = "key";
const AUTO_KEY: &str = "auto_key";
const UNIQUE_KEY: &str = "unique_key";
const TENANT: &str = "tenant";
const PER_TENANT: &str = "per_tenant";
const VERSION: &str = "version";
const EXPIRE_AT: &str = "expire_at";
const SORTED: &str = "sorted";
const PARTITION_BY: &str = "partition_by";
const CONFIDENCE: &str = "confidence";
const FIELD_KEYS: &[&str] = &[
    KEY,
    AUTO_KEY,
    UNIQUE_KEY,
    TENANT,
    PER_TENANT,
    VERSION,
    EXPIRE_AT,
    SORTED,
    PARTITION_BY,
    CONFIDENCE,
];

// `confidence(...)` keys.
const INITIAL: &str = "initial";
const EVIDENCE_CAP: &str = "evidence_cap";
const CONFIDENCE_KEYS: &[&str] = &[INITIAL, EVIDENCE_CAP];

/// Popoto's `ConfidenceField` defaults.
const DEFAULT_INITIAL: f64 = 0.5;
const DEFAULT_EVIDENCE_CAP: u32 = 20;

/// Collects the errors of one derive invocation.
#[must_use = "errors are only reported by `Ctxt::check`"]
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    /// An empty error collector.
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Records an error at `span`.
    pub(crate) fn error(&self, span: Span, msg: impl Display) {
        self.syn_error(syn::Error::new(span, msg));
    }

    /// Records an error covering the tokens of `tokens`.
    pub(crate) fn error_spanned_by(&self, tokens: impl ToTokens, msg: impl Display) {
        self.syn_error(syn::Error::new_spanned(tokens, msg));
    }

    /// Records an error produced by syn.
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors.borrow_mut().push(err);
    }

    /// All recorded errors combined into one, or `Ok` if there was none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for err in errors {
            combined.combine(err);
        }
        Err(combined)
    }
}

/// An attribute slot that refuses to be set twice.
struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: &'static str,
    value: Option<(Span, T)>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: &'static str) -> Self {
        Attr {
            cx,
            name,
            value: None,
        }
    }

    /// Sets the value, or reports a duplicate at `span` (the second occurrence).
    fn set(&mut self, span: Span, value: T) {
        if self.value.is_some() {
            self.cx
                .error(span, format!("duplicate popoto attribute `{}`", self.name));
        } else {
            self.value = Some((span, value));
        }
    }

    fn get(self) -> Option<(Span, T)> {
        self.value
    }
}

/// Container attributes: `#[popoto(name = "...", crate = "...", shared, change_feed)]`.
pub(crate) struct Container {
    /// Redis class name, with the span of its literal.
    pub(crate) name: Option<LitStr>,
    /// Path to the popoto crate.
    pub(crate) crate_path: Option<syn::Path>,
    /// `ttl = seconds`: every write expires the instance this long after it.
    pub(crate) ttl: Option<u64>,
    /// Span of `shared`: instances may be shared across tenants.
    pub(crate) shared: Option<Span>,
    /// Span of `change_feed`: every write appends a change event to the tenant's stream.
    pub(crate) change_feed: Option<Span>,
}

impl Container {
    /// Parses the `#[popoto(...)]` attributes of the struct.
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut name = Attr::none(cx, NAME);
        let mut crate_path = Attr::none(cx, CRATE);
        let mut ttl = Attr::none(cx, TTL);
        let mut shared = Attr::none(cx, SHARED);
        let mut change_feed = Attr::none(cx, CHANGE_FEED);
        for attr in attrs.iter().filter(|a| a.path().is_ident(POPOTO)) {
            let parsed = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                if meta.path.is_ident(NAME) {
                    let lit = lit_str(&meta, "#[popoto(name = \"Episode\")]")?;
                    check_class_name(cx, &lit);
                    name.set(span, lit);
                } else if meta.path.is_ident(CRATE) {
                    let lit = lit_str(&meta, "#[popoto(crate = \"::popoto\")]")?;
                    match lit.parse::<syn::Path>() {
                        Ok(path) => crate_path.set(span, path),
                        Err(_) => cx.error(
                            lit.span(),
                            format!("`{}` is not a path to the popoto crate", lit.value()),
                        ),
                    }
                } else if meta.path.is_ident(TTL) {
                    let expr: Expr = meta.value()?.parse()?;
                    if let Some(v) = parse_ttl(cx, &expr) {
                        ttl.set(span, v);
                    }
                } else if meta.path.is_ident(SHARED) {
                    flag(cx, &meta, SHARED)?;
                    shared.set(span, ());
                } else if meta.path.is_ident(CHANGE_FEED) {
                    flag(cx, &meta, CHANGE_FEED)?;
                    change_feed.set(span, ());
                } else {
                    unknown_key(cx, &meta, "container", CONTAINER_KEYS)?;
                }
                Ok(())
            });
            if let Err(err) = parsed {
                cx.syn_error(err);
            }
        }
        Container {
            name: name.get().map(|(_, lit)| lit),
            crate_path: crate_path.get().map(|(_, path)| path),
            ttl: ttl.get().map(|(_, v)| v),
            shared: shared.get().map(|(span, ())| span),
            change_feed: change_feed.get().map(|(span, ())| span),
        }
    }
}

/// Refuses class names popoto could not use as the first segment of its keys.
fn check_class_name(cx: &Ctxt, lit: &LitStr) {
    let value = lit.value();
    if value.is_empty() {
        cx.error(lit.span(), "the model name cannot be empty");
    } else if value.contains(':') {
        cx.error(
            lit.span(),
            "the model name cannot contain `:`, the separator of Redis key segments",
        );
    }
}

/// Field attributes after the single-field rules.
pub(crate) struct Field {
    /// What the field is; `Plain` without any kind attribute.
    pub(crate) kind: Kind,
    /// Span of `tenant`, when present.
    pub(crate) tenant: Option<Span>,
    /// Span of `per_tenant` (on a `unique_key`), when present.
    pub(crate) per_tenant: Option<Span>,
    /// Span of `version` (on a plain field), when present.
    pub(crate) version: Option<Span>,
    /// Span of `expire_at` (a field that is not stored: the instance's expiry time).
    pub(crate) expire_at: Option<Span>,
    /// The names listed in `partition_by`, in order.
    pub(crate) partition_by: Vec<LitStr>,
}

impl Field {
    /// Parses the `#[popoto(...)]` attributes of one field.
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut kinds: Vec<(&'static str, Span, Kind)> = Vec::new();
        let mut key = Attr::none(cx, KEY);
        let mut auto_key = Attr::none(cx, AUTO_KEY);
        let mut unique_key = Attr::none(cx, UNIQUE_KEY);
        let mut sorted = Attr::none(cx, SORTED);
        let mut confidence = Attr::none(cx, CONFIDENCE);
        let mut tenant = Attr::none(cx, TENANT);
        let mut per_tenant = Attr::none(cx, PER_TENANT);
        let mut version = Attr::none(cx, VERSION);
        let mut expire_at = Attr::none(cx, EXPIRE_AT);
        let mut partition_by = Attr::none(cx, PARTITION_BY);

        for attr in attrs.iter().filter(|a| a.path().is_ident(POPOTO)) {
            let parsed = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                let flags = [
                    (KEY, &mut key, Kind::Key),
                    (AUTO_KEY, &mut auto_key, Kind::AutoKey),
                    (UNIQUE_KEY, &mut unique_key, Kind::UniqueKey),
                    (SORTED, &mut sorted, Kind::Sorted),
                ];
                for (name, slot, kind) in flags {
                    if meta.path.is_ident(name) {
                        flag(cx, &meta, name)?;
                        if slot.value.is_none() {
                            kinds.push((name, span, kind));
                        }
                        slot.set(span, ());
                        return Ok(());
                    }
                }
                if meta.path.is_ident(TENANT) {
                    flag(cx, &meta, TENANT)?;
                    tenant.set(span, ());
                } else if meta.path.is_ident(PER_TENANT) {
                    flag(cx, &meta, PER_TENANT)?;
                    per_tenant.set(span, ());
                } else if meta.path.is_ident(VERSION) {
                    flag(cx, &meta, VERSION)?;
                    version.set(span, ());
                } else if meta.path.is_ident(EXPIRE_AT) {
                    flag(cx, &meta, EXPIRE_AT)?;
                    expire_at.set(span, ());
                } else if meta.path.is_ident(CONFIDENCE) {
                    let kind = parse_confidence(cx, &meta)?;
                    if confidence.value.is_none() {
                        kinds.push((CONFIDENCE, span, kind));
                    }
                    confidence.set(span, ());
                } else if meta.path.is_ident(PARTITION_BY) {
                    let names = parse_partition_by(cx, &meta)?;
                    partition_by.set(span, names);
                } else {
                    unknown_key(cx, &meta, "field", FIELD_KEYS)?;
                }
                Ok(())
            });
            if let Err(err) = parsed {
                cx.syn_error(err);
            }
        }

        let mut kinds = kinds.into_iter();
        let first = kinds.next();
        if let Some((first_name, _, _)) = &first {
            for (name, span, _) in kinds {
                cx.error(
                    span,
                    format!(
                        "`{name}` conflicts with `{first_name}`: a field is at most one of \
                         `key`, `auto_key`, `unique_key`, `sorted`, `confidence`"
                    ),
                );
            }
        }
        let (kind_name, kind) = match first {
            Some((name, _, kind)) => (Some(name), kind),
            None => (None, Kind::Plain),
        };

        let tenant = tenant.get().map(|(span, ())| span);
        if let Some(span) = tenant {
            match kind_name {
                Some(KEY) => {}
                Some(other) => cx.error(
                    span,
                    format!("`tenant` is only allowed together with `key`, not with `{other}`"),
                ),
                None => cx.error(
                    span,
                    "`tenant` is only allowed together with `key`: write `#[popoto(key, tenant)]`",
                ),
            }
        }

        let per_tenant = per_tenant.get().map(|(span, ())| span);
        if let Some(span) = per_tenant {
            match kind_name {
                Some(UNIQUE_KEY) => {}
                Some(other) => cx.error(
                    span,
                    format!(
                        "`per_tenant` is only allowed together with `unique_key`, not with `{other}`"
                    ),
                ),
                None => cx.error(
                    span,
                    "`per_tenant` is only allowed together with `unique_key`: write \
                     `#[popoto(unique_key, per_tenant)]`",
                ),
            }
        }

        let version = version.get().map(|(span, ())| span);
        if let (Some(span), Some(other)) = (version, kind_name) {
            cx.error(
                span,
                format!(
                    "`version` is only allowed on a plain field, not with `{other}`: the version \
                     changes on every save"
                ),
            );
        }

        let expire_at = expire_at.get().map(|(span, ())| span);
        if let Some(span) = expire_at {
            let other = kind_name
                .or(tenant.map(|_| TENANT))
                .or(version.map(|_| VERSION))
                .or(partition_by.value.as_ref().map(|_| PARTITION_BY));
            if let Some(other) = other {
                cx.error(
                    span,
                    format!(
                        "`expire_at` conflicts with `{other}`: the expiry time is not a popoto \
                         field (it is not stored in the hash)"
                    ),
                );
            }
        }

        let partition_by = match partition_by.get() {
            Some((span, names)) => {
                if !matches!(kind, Kind::Sorted | Kind::Confidence { .. }) {
                    cx.error(
                        span,
                        "`partition_by` is only allowed on `sorted` or `confidence` fields",
                    );
                }
                names
            }
            None => Vec::new(),
        };

        Field {
            kind,
            tenant,
            per_tenant,
            version,
            expire_at,
            partition_by,
        }
    }
}

/// A key without a value (`key`, `sorted`, ...): reports and skips a value given anyway.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta, name: &str) -> syn::Result<()> {
    let msg = format!("`{name}` takes no value: write `#[popoto({name})]`");
    if meta.input.peek(Token![=]) {
        let eq: Token![=] = meta.input.parse()?;
        let value: Expr = meta.input.parse()?;
        cx.error_spanned_by(quote::quote!(#eq #value), msg);
    } else if meta.input.peek(syn::token::Paren) {
        let group: TokenTree = meta.input.parse()?;
        cx.error_spanned_by(group, msg);
    }
    Ok(())
}

/// Consumes the value of a key (`= expr` or `(...)`), if any.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// The string literal after `key =`, with a syntax hint when it is something else.
fn lit_str(meta: &ParseNestedMeta, example: &str) -> syn::Result<LitStr> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        return value.parse();
    }
    let key = meta.path.to_token_stream().to_string();
    let other: Expr = value.parse()?;
    Err(syn::Error::new_spanned(
        other,
        format!("`{key}` takes a string literal: `{example}`"),
    ))
}

/// Reports an unknown key with a "did you mean" suggestion, then skips its value.
fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    what: &str,
    expected: &[&str],
) -> syn::Result<()> {
    let name = meta.path.get_ident().map_or_else(
        || meta.path.to_token_stream().to_string(),
        |i| i.to_string(),
    );
    let msg = match did_you_mean(&name, expected) {
        Some(candidate) => {
            format!("unknown popoto {what} attribute `{name}`; did you mean `{candidate}`?")
        }
        None => {
            let list = expected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("unknown popoto {what} attribute `{name}`; expected one of {list}")
        }
    };
    cx.error_spanned_by(&meta.path, msg);
    skip_value(meta)
}

/// The candidate closest to `name`, if one is close enough to be a likely typo: at most a third
/// of its letters edited (a swap counts as one edit), or a close Jaro-Winkler match (which
/// favours a shared prefix, as in `unique` for `unique_key`).
pub(crate) fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            let edits = strsim::osa_distance(name, c);
            let similarity = strsim::jaro_winkler(name, c);
            (edits, similarity, *c)
        })
        .filter(|&(edits, similarity, c)| {
            edits <= (c.chars().count() / 3).max(1) || similarity >= 0.85
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}
