//! Reads never trust index membership. An index member may be stale (its hash is gone), planted
//! (a manual `SADD`, a buggy writer, another service on the same Redis) or another tenant's, so
//! every instance a read returns is checked against the read's scope: its key parses as a key of
//! the model, a tenant scope's key carries the tenant's segment, and the stored tenant field is
//! the tenant's (checked on the decoded value where rows are loaded, server-side by
//! `lua/verify.lua` where they are not). What fails is skipped and reported, never returned.

use std::sync::LazyLock;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Key, Model};
use crate::tenant::Scope;

/// The verification script (`lua/verify.lua`).
pub(crate) static VERIFY: LazyLock<crate::backend::Script> =
    LazyLock::new(|| crate::backend::Script::read_only(crate::script::lua!("verify.lua")));

/// Candidate keys per script call.
const KEYS_PER_CALL: usize = 1000;

/// A member naming a key of the scope: the member and its key.
pub(crate) type Named<M> = (String, Key<M>);

/// A member skipped: the member (lossily decoded) and why.
pub(crate) type Skipped = (String, Skip);

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

    /// The members that name keys of `M` in this scope, and the others with why not.
    pub(crate) fn keys<M: Model>(&self, members: Vec<Vec<u8>>) -> (Vec<Named<M>>, Vec<Skipped>) {
        let mut skipped = Vec::new();
        let mut keys = Vec::with_capacity(members.len());
        for m in members {
            match self.key::<M>(m) {
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
    pub(crate) async fn verify<M: Model>(
        &self,
        backend: &Backend,
        keys: &[String],
    ) -> Result<Vec<Option<Skip>>> {
        let args = self.args::<M>()?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_CALL) {
            let reply = backend
                .eval("verify", self.model, &VERIFY, chunk, &args)
                .await?;
            let mask: Vec<u8> = redis::from_redis_value(reply).map_err(|e| self.protocol(e))?;
            if mask.len() != chunk.len() {
                let detail = format!("{} flags for {} keys", mask.len(), chunk.len());
                return Err(self.protocol(detail));
            }
            out.extend(mask.iter().map(|&b| match b {
                b'1' => None,
                b'0' => Some(Skip::Stale),
                _ => Some(Skip::ForeignStored),
            }));
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
