//! Parsers of attribute values: `partition_by` lists, `confidence(...)` parameters, `ttl`.

use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitStr, Token, UnOp};

use super::{
    lit_str, unknown_key, Attr, Ctxt, CONFIDENCE_KEYS, DEFAULT_EVIDENCE_CAP, DEFAULT_INITIAL,
    EVIDENCE_CAP, INITIAL,
};
use crate::kind::Kind;

/// `partition_by = "a"` or `partition_by("a", "b")`.
pub(super) fn parse_partition_by(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<LitStr>> {
    if meta.input.peek(Token![=]) {
        let lit = lit_str(meta, "#[popoto(partition_by = \"project_id\")]")?;
        return Ok(vec![lit]);
    }
    if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let names = Punctuated::<LitStr, Token![,]>::parse_terminated(&content).map_err(|e| {
            syn::Error::new(
                e.span(),
                "`partition_by` takes field names as strings: `partition_by(\"a\", \"b\")`",
            )
        })?;
        if names.is_empty() {
            cx.error_spanned_by(&meta.path, "`partition_by` needs at least one field name");
        }
        return Ok(names.into_iter().collect());
    }
    Err(meta.error(
        "`partition_by` needs field names: `partition_by = \"a\"` or `partition_by(\"a\", \"b\")`",
    ))
}

/// `confidence` or `confidence(initial = 0.5, evidence_cap = 20)`.
pub(super) fn parse_confidence(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Kind> {
    let mut initial = Attr::none(cx, INITIAL);
    let mut evidence_cap = Attr::none(cx, EVIDENCE_CAP);
    if meta.input.peek(Token![=]) {
        return Err(
            meta.error("write `confidence` or `confidence(initial = 0.5, evidence_cap = 20)`")
        );
    }
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            let span = inner.path.span();
            if inner.path.is_ident(INITIAL) {
                let expr: Expr = inner.value()?.parse()?;
                if let Some(v) = parse_initial(cx, &expr) {
                    initial.set(span, v);
                }
            } else if inner.path.is_ident(EVIDENCE_CAP) {
                let expr: Expr = inner.value()?.parse()?;
                if let Some(v) = parse_evidence_cap(cx, &expr) {
                    evidence_cap.set(span, v);
                }
            } else {
                unknown_key(cx, &inner, "confidence", CONFIDENCE_KEYS)?;
            }
            Ok(())
        })?;
    }
    Ok(Kind::Confidence {
        initial: initial.get().map_or(DEFAULT_INITIAL, |(_, v)| v),
        evidence_cap: evidence_cap.get().map_or(DEFAULT_EVIDENCE_CAP, |(_, v)| v),
    })
}

/// A number literal, possibly negated, as `f64`; `None` (after an error) for anything else.
fn number(cx: &Ctxt, expr: &Expr, what: &str) -> Option<f64> {
    let (negative, lit) = match expr {
        Expr::Lit(ExprLit { lit, .. }) => (false, lit),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            Expr::Lit(ExprLit { lit, .. }) => (true, lit),
            _ => {
                cx.error_spanned_by(expr, format!("`{what}` must be a number literal"));
                return None;
            }
        },
        _ => {
            cx.error_spanned_by(expr, format!("`{what}` must be a number literal"));
            return None;
        }
    };
    let value = match lit {
        Lit::Float(f) => f.base10_parse::<f64>(),
        Lit::Int(i) => i.base10_parse::<f64>(),
        _ => {
            cx.error_spanned_by(expr, format!("`{what}` must be a number literal"));
            return None;
        }
    };
    match value {
        Ok(v) => Some(if negative { -v } else { v }),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    }
}

/// `ttl`: a whole number of seconds, at least 1 (popoto's `Meta.ttl`), that fits in `u32`
/// (136 years: the expiry time in milliseconds stays exact in the scripts' Lua numbers).
pub(super) fn parse_ttl(cx: &Ctxt, expr: &Expr) -> Option<u64> {
    let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = expr
    else {
        cx.error_spanned_by(
            expr,
            "`ttl` must be a whole number of seconds: `ttl = 3600`",
        );
        return None;
    };
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(expr, "`ttl` must be at least 1 second, got 0");
            None
        }
        Ok(v) => Some(u64::from(v)),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    }
}

/// `initial`: a number in [0, 1].
fn parse_initial(cx: &Ctxt, expr: &Expr) -> Option<f64> {
    let v = number(cx, expr, INITIAL)?;
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Some(v)
    } else {
        cx.error_spanned_by(expr, format!("`initial` must be between 0 and 1, got {v}"));
        None
    }
}

/// `evidence_cap`: an integer >= 1 that fits in `u32`.
fn parse_evidence_cap(cx: &Ctxt, expr: &Expr) -> Option<u32> {
    let lit = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit,
        _ => {
            cx.error_spanned_by(expr, "`evidence_cap` must be an integer of at least 1");
            return None;
        }
    };
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(expr, "`evidence_cap` must be at least 1, got 0");
            None
        }
        Ok(v) => Some(v),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    }
}
