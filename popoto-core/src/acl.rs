//! Per-tenant Redis ACL users: defence in depth under the cluster layout. A tenant's user may
//! touch only keys under its tenant's hash tag (`~{tag}*`) and only the commands the crate's
//! tenant paths send; keyspace-wide commands, which key patterns do not restrict (`KEYS`,
//! `SCAN`, `RANDOMKEY`, `FLUSHALL`, `FLUSHDB`, `SWAPDB`, ...), are denied outright. A tenant
//! `Db` connected as that user cannot read, list or destroy another tenant's keys, even with
//! raw commands and scripts (Redis checks a script's commands against the user too).
//!
//! What it does not protect: memory and CPU (Redis has no per-user quota: one tenant can still
//! fill the server or run slow scripts), logical databases (key patterns apply in every
//! database of the server), and popoto's layout, whose keys of one tenant share no prefix
//! (refused with [`Error::Layout`]).

use serde::Serialize;

use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::tenant::TenantId;

/// Commands denied after the categories are granted: keyspace-wide reads and writes, and the
/// script and function management a tenant never needs.
const DENIED: &[&str] = &[
    "-@dangerous",
    "-@admin",
    "-keys",
    "-scan",
    "-randomkey",
    "-flushall",
    "-flushdb",
    "-swapdb",
    "-move",
    "-copy",
    "-script|flush",
    "-script|kill",
    "-function",
    "-publish",
    "-spublish",
];

/// What a cluster client asks of a node to route commands (the slot map, no data).
const CLUSTER: &[&str] = &[
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
    "+readonly",
];

/// The ACL user of one tenant: its name and the rules of its `ACL SETUSER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantUser {
    /// `popoto-tenant-<tag>`: the tenant's hash tag, so that every tenant id gives one name.
    pub username: String,
    /// The rules, in order (the password excepted).
    pub rules: Vec<String>,
}

impl TenantUser {
    /// The user of `tenant` on keys laid out as `layout`; only the cluster layout puts a
    /// tenant's keys under one prefix.
    pub fn of(layout: Layout, tenant: &TenantId) -> Result<TenantUser> {
        let Some(pattern) = layout.tenant_key_pattern(tenant.as_str()) else {
            return Err(Error::Layout {
                model: "-",
                op: "a per-tenant ACL user",
                layout,
            });
        };
        let mut rules: Vec<String> = [
            "reset",
            "on",
            "resetchannels",
            "-@all",
            "+@read",
            "+@write",
            "+@scripting",
            "+@connection",
            "+select",
        ]
        .iter()
        .map(|r| (*r).to_owned())
        .collect();
        rules.extend(DENIED.iter().map(|r| (*r).to_owned()));
        rules.extend(CLUSTER.iter().map(|r| (*r).to_owned()));
        rules.push(format!("~{pattern}"));
        Ok(TenantUser {
            username: format!(
                "popoto-tenant-{}",
                crate::keys::tag("", Some(tenant.as_str()))
            ),
            rules,
        })
    }
}

impl Admin {
    /// Creates (or resets) `tenant`'s ACL user with `password` on the server (on a cluster,
    /// on every node): connect the tenant's `Db` as that user (`redis://<user>:<password>@…`).
    pub async fn create_tenant_user(
        &self,
        tenant: &TenantId,
        password: &str,
    ) -> Result<TenantUser> {
        let backend = self.backend().await?;
        let user = TenantUser::of(backend.layout(), tenant)?;
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(&user.username);
        for rule in &user.rules {
            cmd.arg(rule);
        }
        cmd.arg(format!(">{password}"));
        backend.query::<()>("create tenant user", "-", &cmd).await?;
        Ok(user)
    }

    /// Deletes `tenant`'s ACL user (on a cluster, on every node); whether it existed.
    pub async fn delete_tenant_user(&self, tenant: &TenantId) -> Result<bool> {
        let backend = self.backend().await?;
        let user = TenantUser::of(backend.layout(), tenant)?;
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DELUSER").arg(&user.username);
        let n: i64 = backend.query("delete tenant user", "-", &cmd).await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_user_is_confined_to_its_tag_and_denied_keyspace_commands() {
        let t = TenantId::new("a}b").unwrap_or_else(|e| panic!("{e}"));
        let user = TenantUser::of(Layout::Cluster, &t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user.username, "popoto-tenant-~617d62");
        assert_eq!(user.rules.last().map(String::as_str), Some(r"~{~617d62}*"));
        let pos = |r: &str| user.rules.iter().position(|x| x == r).unwrap_or(usize::MAX);
        // Grants first, denials after them (later rules win), no key pattern but the tag's.
        assert!(pos("+@read") < pos("-keys") && pos("+@write") < pos("-flushall"));
        for denied in [
            "-keys",
            "-scan",
            "-randomkey",
            "-flushall",
            "-flushdb",
            "-swapdb",
        ] {
            assert!(pos(denied) < user.rules.len(), "{denied}");
        }
        assert_eq!(user.rules.iter().filter(|r| r.starts_with('~')).count(), 1);
        assert!(matches!(
            TenantUser::of(Layout::Popoto, &t),
            Err(Error::Layout { .. })
        ));
    }
}
