//! Reads never trust index membership. An index member may be stale (its hash is gone), planted
//! (a manual `SADD`, a buggy writer, another service on the same Redis) or another tenant's, so
//! every instance a read returns is checked against the read's scope: its key parses as a key of
//! the model, a tenant scope's key carries the tenant's segment, and the stored tenant field is
//! the tenant's (checked on the decoded value where rows are loaded, by a pipelined read of the
//! field where they are not). What fails is skipped and reported, never returned.

use redis::{RedisResult, Value};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Key, Model};
use crate::tenant::Scope;

/// Candidate keys per pipeline.
const KEYS_PER_CALL: usize = 10_000;

/// A member skipped: the member (lossily decoded) and why.
pub(crate) type Skipped = (String, Skip);

/// What a read hands back with each row it checks: the row's [`Key`], or nothing when the
/// caller wants values only (the same checks, without allocating the key's segments).
pub(crate) trait RowKey<M: Model>: Sized {
    /// Member `member` as a string and this, if it names a key of `M` in `guard`'s scope.
    fn check(guard: &Guard<'_>, member: Vec<u8>) -> std::result::Result<(String, Self), Skipped>;
}

impl<M: Model> RowKey<M> for Key<M> {
    fn check(guard: &Guard<'_>, member: Vec<u8>) -> std::result::Result<(String, Self), Skipped> {
        guard.key::<M>(member)
    }
}

impl<M: Model> RowKey<M> for () {
    fn check(guard: &Guard<'_>, member: Vec<u8>) -> std::result::Result<(String, Self), Skipped> {
        guard.name::<M>(member).map(|name| (name, ()))
    }
}

/// What a read of model `M` through a scope must check of each candidate instance.
pub(crate) struct Guard<'a> {
    model: &'static str,
    /// How the keys are laid out.
    layout: crate::keys::Layout,
    /// The tenant field's index and the scope's tenant, for a tenant model in a tenant scope.
    tenant: Option<(usize, &'a str)>,
}

/// Why a candidate was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The member is not a key of the model.
    Malformed,
    /// The key names another tenant.
    ForeignKey,
    /// No instance at the key: a stale index entry (reported at debug level only).
    Stale,
    /// The key holds something else than an instance of the scope: not a hash, or a stored
    /// tenant field other than the scope's tenant.
    ForeignStored,
    /// The decoded instance's tenant field is not the scope's tenant.
    ForeignValue,
}

impl Skip {
    fn label(self) -> &'static str {
        match self {
            Skip::Malformed => "not a key of the model",
            Skip::ForeignKey => "key of another tenant",
            Skip::Stale => "no instance (stale index entry)",
            Skip::ForeignStored => "not an instance of this scope (type or stored tenant field)",
            Skip::ForeignValue => "stored tenant field of another tenant",
        }
    }
}

impl<'a> Guard<'a> {
    /// The checks of model `M` through `scope`, on keys laid out as `layout`.
    pub(crate) fn of<M: Model>(layout: crate::keys::Layout, scope: &'a Scope) -> Guard<'a> {
        let tenant = match (scope, M::META.tenant) {
            (Scope::Tenant(t), Some(f)) => Some((f, t.as_str())),
            _ => None,
        };
        Guard {
            model: M::META.name,
            layout,
            tenant,
        }
    }

    /// Whether this read is confined to a tenant (a tenant model through a tenant handle).
    pub(crate) fn is_tenant(&self) -> bool {
        self.tenant.is_some()
    }

    /// The key index member `member` names, if it is a key of `M` in this scope (with the
    /// member as a string); else the member (lossily decoded, for reports) and why not.
    pub(crate) fn key<M: Model>(
        &self,
        member: Vec<u8>,
    ) -> std::result::Result<(String, Key<M>), (String, Skip)> {
        let member = String::from_utf8(member).map_err(|e| {
            (
                String::from_utf8_lossy(e.as_bytes()).into_owned(),
                Skip::Malformed,
            )
        })?;
        let Ok(key) = Key::<M>::parse_in(self.layout, &member) else {
            return Err((member, Skip::Malformed));
        };
        match self.tenant {
            Some((_, t)) if key.tenant() != Some(t) => Err((member, Skip::ForeignKey)),
            _ => Ok((member, key)),
        }
    }

    /// Member `member` as a string if it names a key of `M` in this scope, else the member
    /// (lossily decoded) and why not: the checks of [`Guard::key`] without building the key.
    pub(crate) fn name<M: Model>(&self, member: Vec<u8>) -> std::result::Result<String, Skipped> {
        let member = String::from_utf8(member).map_err(|e| {
            (
                String::from_utf8_lossy(e.as_bytes()).into_owned(),
                Skip::Malformed,
            )
        })?;
        let tenant = self.tenant.map(|(_, t)| t);
        match self.layout.instance_key_of(M::META, &member, tenant) {
            Ok(true) => Ok(member),
            Ok(false) => Err((member, Skip::ForeignKey)),
            Err(_) => Err((member, Skip::Malformed)),
        }
    }

    /// The members that name keys of `M` in this scope (with their keys, or `()`), and the
    /// others with why not.
    pub(crate) fn keys<M: Model, K: RowKey<M>>(
        &self,
        members: Vec<Vec<u8>>,
    ) -> (Vec<(String, K)>, Vec<Skipped>) {
        let mut skipped = Vec::new();
        let mut keys = Vec::with_capacity(members.len());
        for m in members {
            match K::check(self, m) {
                Ok(named) => keys.push(named),
                Err(skip) => skipped.push(skip),
            }
        }
        (keys, skipped)
    }

    /// Whether a loaded instance belongs to this scope.
    pub(crate) fn value<M: Model>(&self, value: &M) -> std::result::Result<(), Skip> {
        match self.tenant {
            Some((_, t)) if value.tenant_id() != Some(t) => Err(Skip::ForeignValue),
            _ => Ok(()),
        }
    }

    /// Checks server-side which of `keys` (already passed through [`Guard::key`]) hold an
    /// instance of this scope: `None` for those that do, else why not.
    ///
    /// One pipeline of plain reads per chunk (`HGET` of the tenant field, or `HLEN` without a
    /// tenant), the same commands a hand-written check sends: a read-only script doing the same
    /// costs the server about twice as much per key. A key whose field reads as nil is asked
    /// `EXISTS` in a second pipeline (stale entry or a hash without the field); a key holding
    /// another type fails alone, as not an instance.
    pub(crate) async fn verify<M: Model>(
        &self,
        backend: &Backend,
        keys: &[String],
    ) -> Result<Vec<Option<Skip>>> {
        let want = match self.tenant {
            Some((f, t)) => Some((M::META.fields[f].name, tenant_bytes::<M>(f, t)?)),
            None => None,
        };
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_CALL) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for k in chunk {
                match &want {
                    Some((field, _)) => pipe.cmd("HGET").arg(k).arg(*field),
                    None => pipe.cmd("HLEN").arg(k),
                };
            }
            let replies: Vec<RedisResult<Value>> =
                backend.pipeline("verify", self.model, &pipe).await?;
            if replies.len() != chunk.len() {
                let detail = format!("{} replies for {} keys", replies.len(), chunk.len());
                return Err(self.protocol(detail));
            }
            let start = out.len();
            let mut unknown = Vec::new();
            for (i, reply) in replies.into_iter().enumerate() {
                out.push(match (reply, &want) {
                    (Err(_), _) => Some(Skip::ForeignStored),
                    (Ok(Value::Nil), Some(_)) => {
                        unknown.push(i);
                        Some(Skip::Stale)
                    }
                    (Ok(Value::BulkString(v)), Some((_, w))) if v == *w => None,
                    (Ok(_), Some(_)) => Some(Skip::ForeignStored),
                    (Ok(Value::Int(n)), None) if n > 0 => None,
                    (Ok(Value::Int(0)), None) => Some(Skip::Stale),
                    (Ok(_), None) => Some(Skip::ForeignStored),
                });
            }
            if unknown.is_empty() {
                continue;
            }
            // A nil field: no key (a stale entry), or a key without the tenant field.
            let mut pipe = redis::pipe();
            for &i in &unknown {
                pipe.cmd("EXISTS").arg(&chunk[i]);
            }
            let exists: Vec<i64> = backend.pipeline("verify", self.model, &pipe).await?;
            if exists.len() != unknown.len() {
                let detail = format!("{} replies for {} keys", exists.len(), unknown.len());
                return Err(self.protocol(detail));
            }
            for (i, e) in unknown.into_iter().zip(exists) {
                if e != 0 {
                    out[start + i] = Some(Skip::ForeignStored);
                }
            }
        }
        Ok(out)
    }

    fn protocol(&self, detail: impl std::fmt::Display) -> Error {
        Error::Protocol {
            op: "verify",
            model: self.model,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn args<M: Model>(&self) -> Result<Vec<Vec<u8>>> {
        match self.tenant {
            Some((f, t)) => {
                let want = tenant_bytes::<M>(f, t)?;
                Ok(vec![M::META.fields[f].name.as_bytes().to_vec(), want])
            }
            None => Ok(vec![Vec::new(), Vec::new()]),
        }
    }
}

/// The bytes a tenant field (field `f` of `M`) holding `tenant` is stored as: msgpack of the
/// str, the smallest form that fits, as popoto stores it.
pub(crate) fn tenant_bytes<M: Model>(f: usize, tenant: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(tenant.len() + 5);
    rmp::encode::write_str(&mut out, tenant)
        .map_err(|e| crate::model::invalid_value(M::META, f, e))?;
    Ok(out)
}

/// Reports candidates a read skipped: one `tracing` warning naming the index keys read, the
/// number skipped and, per reason, one example member.
pub(crate) fn report(model: &'static str, indexes: &[String], skipped: &[(String, Skip)]) {
    if skipped.is_empty() {
        return;
    }
    let mut reasons: Vec<(Skip, &str)> = Vec::new();
    for (member, why) in skipped {
        if !reasons.iter().any(|(r, _)| r == why) {
            reasons.push((*why, member));
        }
    }
    for (why, example) in reasons {
        let n = skipped.iter().filter(|(_, w)| *w == why).count();
        if why == Skip::Stale {
            tracing::debug!(model, index = %indexes.join(" "), skipped = n, example, "{}", why.label());
            continue;
        }
        tracing::warn!(
            model,
            index = %indexes.join(" "),
            skipped = n,
            example,
            "index members skipped: {}",
            why.label()
        );
    }
}
