//! Grants of shared instances on both sides: the instance's subscribers hash (the authority
//! every read and write script checks) and the tenant's grants hash (what a tenant lists and
//! follows). Where the layout keeps both in one slot (popoto's) each change is one script call;
//! where it does not (a cluster: [`crate::keys::Layout::splits_grants`]) it is the instance's
//! side, then the tenant's: a grant is made on the instance's side first and revoked there
//! first, so a cut between the two calls never grants more than the instance's side says, and
//! a tenant's grant counts only when its instance's side confirms it. The shared audit reports
//! (and repairs) the two sides disagreeing.

use std::sync::LazyLock;

use redis::Value;

use super::wire::{int, protocol, refused, text, InstanceKeys, ATTEMPTS, OP};
use super::{Access, SharedId};
use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::keys::{self, FeedOf};
use crate::tenant::TenantId;

/// Grants on either side or both, unshare, purge of a tenant (`lua/shared_grants.lua`).
pub(crate) static GRANTS: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("shared_grants.lua")));

/// The fan-out's check of grants (`lua/feed_grants.lua`).
pub(crate) static FEED_GRANTS: LazyLock<Script> =
    LazyLock::new(|| Script::read_only(crate::script::lua!("feed_grants.lua")));

/// One grant as a tenant's grants hash records it (verified against the subscribers hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) model: String,
    pub(crate) id: SharedId,
    pub(crate) access: Access,
    /// The feed entry id the subscription starts after.
    pub(crate) start: String,
}

/// Text arguments as bytes.
fn args(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|a| a.as_bytes().to_vec()).collect()
}

/// The items of an `{'ok', ...}` reply, or the refusal as an error.
fn expect_ok(
    backend: &Backend,
    model: &'static str,
    id: &SharedId,
    reply: Value,
) -> Result<Vec<Value>> {
    match reply {
        Value::Array(items) if text(items.first()).as_deref() == Some("ok") => Ok(items),
        Value::Array(items) => Err(refused(backend.layout(), model, id, &items)),
        other => Err(protocol(model, &other)),
    }
}

/// Removes `fields` from `tenant`'s grants hash (the tenant's side of a revoke); the entries
/// removed.
async fn ungrant(
    backend: &Backend,
    model: &'static str,
    id: &SharedId,
    tenant: &str,
    fields: &[String],
) -> Result<u64> {
    if fields.is_empty() {
        return Ok(0);
    }
    let keys = vec![backend.layout().shared_grants_key(tenant)];
    let n = fields.len().to_string();
    let mut a = args(&["ungrant", "", "", tenant, &n]);
    a.extend(fields.iter().map(|f| f.as_bytes().to_vec()));
    let reply = backend.eval(OP, model, &GRANTS, &keys, &a).await?;
    let items = expect_ok(backend, model, id, reply)?;
    Ok(int(items.get(1)).unwrap_or(0))
}

/// Grants `tenant` `access` to shared instance `id` of `model`: the instance's side (which
/// fixes the feed start: after the stream's last entry for a new grant; kept on a change of
/// access), then, where it is another call, the tenant's.
pub(super) async fn subscribe(
    backend: &Backend,
    model: &'static str,
    id: &SharedId,
    tenant: &TenantId,
    access: Access,
) -> Result<()> {
    let layout = backend.layout();
    let k = InstanceKeys::of(layout, model, id.as_str());
    let gkey = layout.shared_grants_key(tenant.as_str());
    let field = keys::shared_grant_field(model, id.as_str());
    let split = layout.splits_grants();
    // Split: the tenant's grant as it is now, so a change of access keeps its start.
    let kept: Option<String> = match split {
        true => {
            backend
                .query(OP, model, redis::cmd("HGET").arg(&gkey).arg(&field))
                .await?
        }
        false => None,
    };
    let mut keys = vec![k.meta, k.subs, k.stream];
    if !split {
        keys.push(gkey.clone());
    }
    let a = args(&[
        "subscribe",
        model,
        id.as_str(),
        tenant.as_str(),
        &field,
        access.code(),
        kept.as_deref().unwrap_or_default(),
    ]);
    let reply = backend.eval(OP, model, &GRANTS, &keys, &a).await?;
    let items = expect_ok(backend, model, id, reply)?;
    if split {
        let start = text(items.get(1)).ok_or_else(|| protocol(model, &items))?;
        let value = format!("{}:{start}", access.code());
        let a = args(&["grant", "", "", tenant.as_str(), &field, &value]);
        let reply = backend.eval(OP, model, &GRANTS, &[gkey], &a).await?;
        expect_ok(backend, model, id, reply)?;
    }
    Ok(())
}

/// Removes `tenant`'s grant to the instance: the instance's side first (every call of the
/// tenant that starts after it returned is refused), then the tenant's where it is another
/// call. Whether either side had it.
pub(super) async fn unsubscribe(
    backend: &Backend,
    model: &'static str,
    id: &SharedId,
    tenant: &TenantId,
) -> Result<bool> {
    let layout = backend.layout();
    let k = InstanceKeys::of(layout, model, id.as_str());
    let gkey = layout.shared_grants_key(tenant.as_str());
    let field = keys::shared_grant_field(model, id.as_str());
    let split = layout.splits_grants();
    let mut keys = vec![k.subs];
    if !split {
        keys.push(gkey);
    }
    let a = args(&["unsubscribe", "", "", tenant.as_str(), &field]);
    let reply = backend.eval(OP, model, &GRANTS, &keys, &a).await?;
    let mut removed = int(expect_ok(backend, model, id, reply)?.get(1)).unwrap_or(0);
    if split {
        removed += ungrant(backend, model, id, tenant.as_str(), &[field]).await?;
    }
    Ok(removed > 0)
}

/// Destroys the instance (value, tags, change feed with its groups' keys, subscribers) and
/// every grant of it: in one call where the layout keeps both sides in one slot, else the
/// instance first, then each subscriber's grant. Whether it existed.
pub(super) async fn unshare(backend: &Backend, model: &'static str, id: &SharedId) -> Result<bool> {
    let layout = backend.layout();
    let split = layout.splits_grants();
    let k = InstanceKeys::of(layout, model, id.as_str());
    let of = FeedOf::Shared(model, id.as_str());
    let field = keys::shared_grant_field(model, id.as_str());
    for _ in 0..ATTEMPTS {
        // Both sides in one call: the subscribers read, whose grants keys the call declares.
        let subs: Vec<String> = match split {
            true => Vec::new(),
            false => {
                backend
                    .query(OP, model, redis::cmd("HKEYS").arg(&k.subs))
                    .await?
            }
        };
        let groups = crate::feed::group_names(backend, of).await?;
        let mut keys = vec![
            k.value.clone(),
            k.meta.clone(),
            k.tags.clone(),
            k.subs.clone(),
            k.stream.clone(),
            k.feed_meta.clone(),
        ];
        for g in &groups {
            keys.push(layout.feed_done_key(of, g));
            keys.push(layout.feed_dead_key(of, g));
        }
        keys.extend(subs.iter().map(|t| layout.shared_grants_key(t)));
        keys.extend(k.ids.clone());
        let sides = if split { "instance" } else { "both" };
        let mut a = args(&["unshare", model, id.as_str(), sides, &field]);
        a.push(groups.len().to_string().into_bytes());
        a.extend(groups.iter().map(|g| g.as_bytes().to_vec()));
        a.push(subs.len().to_string().into_bytes());
        a.extend(subs.iter().map(|t| t.as_bytes().to_vec()));
        let reply = backend.eval(OP, model, &GRANTS, &keys, &a).await?;
        let Value::Array(items) = &reply else {
            return Err(protocol(model, &reply));
        };
        match text(items.first()).as_deref() {
            Some("ok") => {}
            Some("missing") => return Ok(false),
            Some("changed") => continue,
            _ => return Err(refused(layout, model, id, items)),
        }
        if split {
            // The subscribers the instance had: their side of the grant, now naming nothing.
            for t in items.iter().skip(2).filter_map(|v| text(Some(v))) {
                match TenantId::new(&t) {
                    Ok(t) => {
                        ungrant(backend, model, id, t.as_str(), std::slice::from_ref(&field))
                            .await?;
                    }
                    Err(_) => tracing::warn!(key = %k.subs, "malformed subscriber entry ignored"),
                }
            }
        }
        return Ok(true);
    }
    Err(Error::Contention {
        model,
        key: k.subs,
        attempts: ATTEMPTS,
    })
}

/// The tenant's grants: its grants hash, each entry confirmed by the instance's subscribers
/// hash (one pipeline per slot: one on one server; an entry either side lacks, or whose access
/// differs, is no grant, and is reported).
pub(crate) async fn read_grants(backend: &Backend, tenant: &TenantId) -> Result<Vec<Grant>> {
    let layout = backend.layout();
    let gkey = layout.shared_grants_key(tenant.as_str());
    let raw: Vec<(String, String)> = backend
        .query(OP, "-", redis::cmd("HGETALL").arg(&gkey))
        .await?;
    let mut candidates = Vec::with_capacity(raw.len());
    for (field, v) in raw {
        match parse_grant(&field, &v) {
            Some(g) => candidates.push(g),
            None => tracing::warn!(key = %gkey, field = %field, "malformed grant ignored"),
        }
    }
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let cmds: Vec<(String, redis::Cmd)> = candidates
        .iter()
        .map(|g| {
            let key = layout.shared_subs_key(&g.model, g.id.as_str());
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&key).arg(tenant.as_str());
            (key, cmd)
        })
        .collect();
    let confirmed: Vec<Option<String>> = backend.pipeline_per_slot(OP, "-", &cmds).await?;
    Ok(candidates
        .into_iter()
        .zip(confirmed)
        .filter_map(|(g, c)| {
            if c.as_deref() == Some(g.access.code()) {
                Some(g)
            } else {
                tracing::warn!(key = %gkey, model = %g.model, id = %g.id, "grant not confirmed by the subscribers hash ignored");
                None
            }
        })
        .collect())
}

/// A grants hash entry (`<Model>:<id>` -> `<access>:<feed start>`), or `None` if malformed.
pub(super) fn parse_grant(field: &str, value: &str) -> Option<Grant> {
    let (m, id) = keys::parse_shared_grant_field(field)?;
    let (a, start) = value.split_once(':')?;
    let ok_start = start.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
    });
    ok_start.then_some(())?;
    Some(Grant {
        model: m,
        id: SharedId::new(id).ok()?,
        access: Access::parse(a)?,
        start: start.to_owned(),
    })
}

/// One grant a change feed's reader follows: tenant, model, id and the grant's start.
pub(crate) type Followed<'a> = (&'a TenantId, &'a str, &'a SharedId, &'a str);

/// Which side(s) one call of `feed_grants.lua` checks.
#[derive(Clone, Copy)]
enum Side {
    Both,
    Subs,
    Grants,
}

/// Whether each grant still holds, with the same start (a grant made anew is another
/// subscription), both sides agreeing: the check of a change feed's fan-out. One call where
/// the layout keeps both sides in one slot; on a cluster, the instances' sides first (a call
/// per slot), then the tenants' (a call per slot): a grant revoked on the instance's side
/// before the check is seen there, one made anew meanwhile has another start on the tenant's.
pub(crate) async fn check_grants(backend: &Backend, grants: &[Followed<'_>]) -> Result<Vec<bool>> {
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let layout = backend.layout();
    let sides: &[Side] = match layout.splits_grants() {
        true => &[Side::Subs, Side::Grants],
        false => &[Side::Both],
    };
    // The access each pair holds by every side checked so far (None: not yet checked).
    let mut held: Vec<Option<u8>> = vec![None; grants.len()];
    for &side in sides {
        let pairs: Vec<(Vec<String>, Vec<Vec<u8>>)> = grants
            .iter()
            .map(|(tenant, model, id, start)| {
                let gkey = layout.shared_grants_key(tenant.as_str());
                let skey = layout.shared_subs_key(model, id.as_str());
                let field = keys::shared_grant_field(model, id.as_str());
                match side {
                    Side::Both => (vec![gkey, skey], args(&[&field, tenant.as_str(), start])),
                    Side::Subs => (vec![skey], args(&[tenant.as_str()])),
                    Side::Grants => (vec![gkey], args(&[&field, start])),
                }
            })
            .collect();
        let groups = backend.slot_groups(pairs.iter().map(|(k, _)| k[0].as_str()));
        let label = match side {
            Side::Both => "both",
            Side::Subs => "subs",
            Side::Grants => "grants",
        };
        let calls = groups.iter().map(|g| {
            let mut keys = Vec::new();
            let mut a = args(&[label]);
            for &i in g {
                keys.extend(pairs[i].0.iter().cloned());
                a.extend(pairs[i].1.iter().cloned());
            }
            async move { backend.eval(OP, "-", &FEED_GRANTS, &keys, &a).await }
        });
        let replies = futures_util::future::try_join_all(calls).await?;
        for (g, reply) in groups.iter().zip(replies) {
            let Value::BulkString(b) = &reply else {
                return Err(protocol("-", &reply));
            };
            if b.len() != g.len() {
                return Err(protocol("-", &reply));
            }
            for (&i, &c) in g.iter().zip(b) {
                held[i] = match held[i] {
                    None => Some(c),
                    Some(before) if before == c => Some(c),
                    Some(_) => Some(b'-'),
                };
            }
        }
    }
    Ok(held
        .into_iter()
        .map(|c| matches!(c, Some(b'r' | b'w')))
        .collect())
}

/// Removes every grant of `tenant` (a tenant being destroyed): its grants hash and its entry in
/// each subscribers hash it names; in one call re-checked against what was read where the
/// layout keeps both sides in one slot, else each instance's side first, then the tenant's,
/// until its grants hash is empty. Returns the subscriber entries removed.
pub(crate) async fn purge_tenant(backend: &Backend, tenant: &TenantId) -> Result<u64> {
    let layout = backend.layout();
    let gkey = layout.shared_grants_key(tenant.as_str());
    let what = || SharedId::new(format!("grants of tenant {tenant}"));
    let mut removed = 0;
    for _ in 0..ATTEMPTS {
        let fields: Vec<String> = backend
            .query(OP, "-", redis::cmd("HKEYS").arg(&gkey))
            .await?;
        if fields.is_empty() {
            return Ok(removed);
        }
        if layout.splits_grants() {
            for f in &fields {
                // A field that names no instance has no subscribers entry.
                let Some((m, id)) = keys::parse_shared_grant_field(f) else {
                    continue;
                };
                let keys = vec![layout.shared_subs_key(&m, &id)];
                let a = args(&["unsubscribe", "", "", tenant.as_str(), f]);
                let reply = backend.eval(OP, "-", &GRANTS, &keys, &a).await?;
                removed += int(expect_ok(backend, "-", &what()?, reply)?.get(1)).unwrap_or(0);
            }
            ungrant(backend, "-", &what()?, tenant.as_str(), &fields).await?;
            continue;
        }
        let mut keys = vec![gkey.clone()];
        let mut a = args(&["purge", "", "", tenant.as_str(), &fields.len().to_string()]);
        for f in &fields {
            // A field that names no instance has no subscribers entry: its "subscribers key"
            // is the grants hash itself, deleted by the call anyway.
            keys.push(match keys::parse_shared_grant_field(f) {
                Some((m, id)) => layout.shared_subs_key(&m, &id),
                None => gkey.clone(),
            });
            a.push(f.as_bytes().to_vec());
        }
        let reply = backend.eval(OP, "-", &GRANTS, &keys, &a).await?;
        match &reply {
            Value::Array(items) if text(items.first()).as_deref() == Some("ok") => {
                return int(items.get(1)).ok_or_else(|| protocol("-", &reply));
            }
            Value::Array(items) if text(items.first()).as_deref() == Some("changed") => continue,
            Value::Array(items) => return Err(refused(layout, "-", &what()?, items)),
            _ => return Err(protocol("-", &reply)),
        }
    }
    Err(Error::Contention {
        model: "-",
        key: gkey,
        attempts: ATTEMPTS,
    })
}
