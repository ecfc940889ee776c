//! Selection: which tenant a request asks for, from a header, the host or a path segment.
//!
//! A selection is not proof of anything: it is authorized against the principal afterwards.

use std::net::IpAddr;

use axum::http::{header, request::Parts, HeaderMap, HeaderName};
use popoto_core::TenantId;

/// A configured selection source.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// The value of a header (`X-Tenant`).
    Header(HeaderName),
    /// The one label left of a base domain: `acme.example.com` under `example.com`.
    Host {
        /// Lowercase, without leading dot.
        base: String,
    },
    /// The path segment after a prefix: `/t/acme/...` under `/t`.
    Path {
        /// Starts with `/`, no trailing `/`.
        prefix: String,
    },
}

/// What one source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Nothing for this source: the next one is asked.
    None,
    /// A tenant.
    Tenant(TenantId),
    /// Something that is no tenant (`foo.bar.example.com`, an invalid id): refused, not skipped.
    Invalid(String),
}

impl Selector {
    /// What this source finds in `parts`; `trusted` says whether the peer is a trusted proxy
    /// (whose `Forwarded`/`X-Forwarded-Host` are then believed).
    pub(crate) fn select(&self, parts: &Parts, trusted: bool) -> Selection {
        match self {
            Selector::Header(name) => {
                let mut values = parts.headers.get_all(name).iter();
                let Some(value) = values.next() else {
                    return Selection::None;
                };
                if values.next().is_some() {
                    return Selection::Invalid(format!("several {name} headers"));
                }
                match value.to_str() {
                    Ok(v) => tenant(v.trim()),
                    Err(_) => Selection::Invalid(format!("{name} is not ASCII")),
                }
            }
            Selector::Host { base } => match request_host(parts, trusted) {
                Some(host) => tenant_of_host(&host, base),
                None => Selection::None,
            },
            Selector::Path { prefix } => tenant_of_path(parts.uri.path(), prefix),
        }
    }
}

fn tenant(id: &str) -> Selection {
    match TenantId::new(id) {
        Ok(t) => Selection::Tenant(t),
        Err(e) => Selection::Invalid(e.to_string()),
    }
}

/// Whether `peer` is one of the trusted proxies.
pub(crate) fn is_trusted(peer: Option<IpAddr>, proxies: &[IpAddr]) -> bool {
    peer.is_some_and(|p| proxies.contains(&p.to_canonical()))
}

/// The host the client asked for: from a trusted proxy, the last `Forwarded: host=` or
/// `X-Forwarded-Host` value (the one that proxy appended); otherwise `Host` or the URI's
/// authority. Lowercase, without port.
pub(crate) fn request_host(parts: &Parts, trusted: bool) -> Option<String> {
    let forwarded = if trusted {
        forwarded_host(&parts.headers).or_else(|| last_value(&parts.headers, "x-forwarded-host"))
    } else {
        None
    };
    let raw = match forwarded {
        Some(h) => h,
        None => match parts.headers.get(header::HOST) {
            Some(v) => v.to_str().ok()?.to_owned(),
            None => parts.uri.authority()?.as_str().to_owned(),
        },
    };
    Some(strip_port(raw.trim()).to_ascii_lowercase())
}

/// The last comma-separated value of the last `name` header.
fn last_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_owned())
}

/// `host=` of the last element of the last `Forwarded` header (RFC 7239).
fn forwarded_host(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get_all(header::FORWARDED)
        .iter()
        .next_back()?
        .to_str()
        .ok()?;
    let element = value.rsplit(',').next()?;
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("host")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// `host` without `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The tenant label of `host` under `base`: exactly one DNS label (`[a-z0-9-]`, not starting or
/// ending with `-`). The base itself or a host outside it selects nothing; `foo.bar.base` or a
/// label with other characters is invalid.
pub(crate) fn tenant_of_host(host: &str, base: &str) -> Selection {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host == base {
        return Selection::None;
    }
    let Some(label) = host
        .strip_suffix(base)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return Selection::None;
    };
    let valid = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if valid {
        tenant(label)
    } else {
        Selection::Invalid("the host is not one DNS label under the base domain".into())
    }
}

/// The segment after `prefix` in `path`, percent-decoded: `/t/acme/notes` under `/t` is
/// `acme`. A path outside the prefix selects nothing.
pub(crate) fn tenant_of_path(path: &str, prefix: &str) -> Selection {
    let Some(rest) = path.strip_prefix(prefix) else {
        return Selection::None;
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return Selection::None;
    };
    let segment = rest.split('/').next().unwrap_or_default();
    match percent_decode(segment) {
        Some(id) => tenant(&id),
        None => Selection::Invalid("the tenant segment is not valid percent-encoded UTF-8".into()),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> Selection {
        Selection::Tenant(TenantId::new(id).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn hosts_select_one_label_under_the_base_domain() {
        let base = "example.com";
        assert_eq!(tenant_of_host("acme.example.com", base), t("acme"));
        assert_eq!(tenant_of_host("acme.example.com.", base), t("acme"));
        assert_eq!(tenant_of_host("example.com", base), Selection::None);
        assert_eq!(tenant_of_host("acme.other.com", base), Selection::None);
        assert_eq!(tenant_of_host("evilexample.com", base), Selection::None);
        for bad in [
            "foo.bar.example.com",
            ".example.com",
            "-x.example.com",
            "a_b.example.com",
        ] {
            assert!(
                matches!(tenant_of_host(bad, base), Selection::Invalid(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn ports_are_stripped_and_ipv6_literals_kept() {
        assert_eq!(strip_port("acme.example.com:8080"), "acme.example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("acme.example.com"), "acme.example.com");
    }

    #[test]
    fn paths_select_the_segment_after_the_prefix() {
        assert_eq!(tenant_of_path("/t/acme/notes", "/t"), t("acme"));
        assert_eq!(tenant_of_path("/t/acme", "/t"), t("acme"));
        assert_eq!(tenant_of_path("/t/umbrella%3Aeu", "/t"), t("umbrella:eu"));
        assert_eq!(tenant_of_path("/tx/acme", "/t"), Selection::None);
        assert_eq!(tenant_of_path("/notes", "/t"), Selection::None);
        assert!(matches!(
            tenant_of_path("/t//notes", "/t"),
            Selection::Invalid(_)
        ));
        assert!(matches!(
            tenant_of_path("/t/%ff", "/t"),
            Selection::Invalid(_)
        ));
        assert!(matches!(
            tenant_of_path("/t/%0a", "/t"),
            Selection::Invalid(_)
        ));
    }

    #[test]
    fn forwarded_hosts_take_the_last_element() {
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            "for=1.2.3.4;host=evil.example.com, for=5.6.7.8;host=\"acme.example.com\";proto=https"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(forwarded_host(&h).as_deref(), Some("acme.example.com"));
        h.insert(
            "x-forwarded-host",
            "a.example.com, b.example.com"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(
            last_value(&h, "x-forwarded-host").as_deref(),
            Some("b.example.com")
        );
    }
}
