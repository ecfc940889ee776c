//! Redis URLs of placements, parsed and rebuilt with redis-rs' own parser (never split by hand):
//! the URL of a logical database on the shared server, and URLs with their credentials hidden.

use crate::error::{Error, Result};

/// Schemes whose database is the URL path (`redis://host:port/db`).
const TCP_SCHEMES: [&str; 4] = ["redis", "rediss", "valkey", "valkeys"];

/// Schemes of unix sockets, whose database is the `db` query option.
const UNIX_SCHEMES: [&str; 3] = ["unix", "redis+unix", "valkey+unix"];

/// Query options of unix socket URLs that hold credentials.
const SECRET_OPTIONS: [&str; 2] = ["user", "pass"];

/// What redacted URLs show instead of credentials.
const HIDDEN: &str = "***";

/// The URL of logical database `db` on the server of `shared`: same scheme, host, port, socket,
/// credentials and options; only the database differs. Errors never contain the URL.
pub(crate) fn with_database(shared: &str, db: u8) -> Result<String> {
    let mut url = redis::parse_redis_url(shared)
        .ok_or_else(|| Error::Config("the shared backend's URL is not a redis URL".into()))?;
    if TCP_SCHEMES.contains(&url.scheme()) {
        url.set_path(&format!("/{db}"));
    } else if UNIX_SCHEMES.contains(&url.scheme()) {
        let options: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "db")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(options)
            .append_pair("db", &db.to_string());
    } else {
        return Err(Error::Config(format!(
            "a {} URL has no logical databases",
            url.scheme()
        )));
    }
    Ok(url.into())
}

/// `url` with its user and password (and a unix socket's `user`/`pass` options) shown as `***`;
/// a URL that does not parse is not shown at all.
pub(crate) fn redacted(url: &str) -> String {
    let Some(mut url) = redis::parse_redis_url(url) else {
        return "<not a redis URL>".into();
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Cannot fail: a URL with credentials has a host.
        let _ = url.set_password(None);
        let _ = url.set_username(HIDDEN);
    }
    if url
        .query_pairs()
        .any(|(k, _)| SECRET_OPTIONS.contains(&k.as_ref()))
    {
        let options: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SECRET_OPTIONS.contains(&k.as_ref()) {
                    HIDDEN.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(options);
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ConnectionAddr, IntoConnectionInfo};

    /// What redis-rs reads from a URL: address, database, user, password.
    fn info(url: &str) -> (ConnectionAddr, i64, Option<String>, Option<String>) {
        let info = url
            .into_connection_info()
            .unwrap_or_else(|e| panic!("{url} does not parse: {e}"));
        let r = info.redis_settings();
        (
            info.addr().clone(),
            r.db(),
            r.username().map(str::to_owned),
            r.password().map(str::to_owned),
        )
    }

    fn db_url(shared: &str, db: u8) -> String {
        with_database(shared, db).unwrap_or_else(|e| panic!("database {db} of {shared}: {e}"))
    }

    #[test]
    fn a_database_of_a_url_without_a_path_keeps_host_and_port() {
        let url = db_url("redis://10.0.0.1:6380", 3);
        assert_eq!(url, "redis://10.0.0.1:6380/3");
        assert_eq!(
            info(&url),
            (ConnectionAddr::Tcp("10.0.0.1".into(), 6380), 3, None, None)
        );
    }

    #[test]
    fn a_database_replaces_an_empty_or_numbered_path() {
        assert_eq!(db_url("redis://h:6379/", 3), "redis://h:6379/3");
        assert_eq!(db_url("redis://h:6379/5", 3), "redis://h:6379/3");
        assert_eq!(db_url("redis://h:6379/15", 0), "redis://h:6379/0");
        assert_eq!(db_url("redis://h", 2), "redis://h/2");
        assert_eq!(
            info(&db_url("redis://h", 2)).0,
            ConnectionAddr::Tcp("h".into(), 6379)
        );
    }

    #[test]
    fn a_database_keeps_credentials_and_options() {
        let url = db_url("redis://user:p%40ss@h:6379/5?protocol=resp3", 7);
        assert_eq!(url, "redis://user:p%40ss@h:6379/7?protocol=resp3");
        assert_eq!(
            info(&url),
            (
                ConnectionAddr::Tcp("h".into(), 6379),
                7,
                Some("user".into()),
                Some("p@ss".into())
            )
        );
        let url = db_url("redis://:secret@h:6379", 1);
        assert_eq!(url, "redis://:secret@h:6379/1");
        assert_eq!(info(&url).3.as_deref(), Some("secret"));
    }

    #[test]
    fn a_database_of_a_tls_url_stays_tls() {
        // This build has no TLS feature, so redis-rs cannot connect; the URL is what matters.
        assert_eq!(
            db_url("rediss://user:pw@h:6380/#insecure", 4),
            "rediss://user:pw@h:6380/4#insecure"
        );
        assert_eq!(db_url("rediss://h:6380", 4), "rediss://h:6380/4");
        assert_eq!(db_url("valkey://h:6380/1", 4), "valkey://h:6380/4");
    }

    #[cfg(unix)]
    #[test]
    fn a_database_of_a_unix_socket_is_its_db_option() {
        let url = db_url("unix:///tmp/redis.sock", 6);
        assert_eq!(url, "unix:///tmp/redis.sock?db=6");
        let sock = ConnectionAddr::Unix("/tmp/redis.sock".into());
        assert_eq!(info(&url), (sock.clone(), 6, None, None));
        let url = db_url(
            "redis+unix:///tmp/redis.sock?db=2&pass=pw&protocol=resp3",
            6,
        );
        assert_eq!(
            url,
            "redis+unix:///tmp/redis.sock?pass=pw&protocol=resp3&db=6"
        );
        assert_eq!(info(&url), (sock, 6, None, Some("pw".into())));
    }

    #[test]
    fn a_database_of_a_non_redis_url_is_a_config_error_without_the_url() {
        for bad in ["http://user:hunter2@h/0", "not a url hunter2", ""] {
            match with_database(bad, 1) {
                Err(Error::Config(msg)) => assert!(!msg.contains("hunter2"), "{msg}"),
                other => panic!("{bad}: expected Config, got {other:?}"),
            }
        }
    }

    #[test]
    fn redaction_hides_users_passwords_and_socket_credentials() {
        assert_eq!(
            redacted("redis://user:hunter2@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(redacted("redis://:hunter2@h:6379"), "redis://***@h:6379");
        assert_eq!(redacted("rediss://u:hunter2@h/1"), "rediss://***@h/1");
        assert_eq!(redacted("redis://h:6379/2"), "redis://h:6379/2");
        assert_eq!(
            redacted("unix:///tmp/r.sock?db=1&user=u&pass=hunter2"),
            "unix:///tmp/r.sock?db=1&user=***&pass=***"
        );
        assert_eq!(redacted("http://u:hunter2@h"), "<not a redis URL>");
    }
}
