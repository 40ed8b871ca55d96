//! Which deployment a Redis URL names: standalone, Cluster or Sentinel.
//!
//! - `redis://[user:password@]host[:port][/db]` — one server (standalone).
//! - `redis+cluster://[user:password@]host:port[,host:port...]` — a Cluster,
//!   given by one or more seed nodes.
//! - `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/db]`
//!   — the primary the sentinels name `<master name>`; credentials are those
//!   of the data nodes (the sentinels are asked without).
//!
//! Each has a TLS form, `rediss://`, `rediss+cluster://` and
//! `rediss+sentinel://` (TLS to the sentinels and to the data nodes): the
//! server's certificate is always verified, against the webpki roots or the
//! CA of [`RedisOptions::with_tls_ca`](crate::RedisOptions::with_tls_ca).
//! redis-rs's `#insecure` fragment (no verification) is refused.

use crate::Error;

/// A parsed Redis URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server, as redis-rs reads the URL (`redis://` or `rediss://`).
    Standalone(String),
    /// Seed nodes of a Cluster, each as a `redis://` (`rediss://` for TLS)
    /// URL with the credentials.
    Cluster(Vec<String>),
    /// Sentinels (`redis://host:port` each, `rediss://` for TLS) watching
    /// `master`.
    Sentinel {
        /// The sentinels, without credentials.
        sentinels: Vec<String>,
        /// The name the sentinels know the primary by.
        master: String,
        /// The database on the data nodes.
        db: i64,
        /// `user:password@` or empty, for the data nodes.
        credentials: String,
    },
}

fn bad(what: &'static str) -> Error {
    Error::Url(redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        what,
    )))
}

/// Splits `[credentials@]host:port,host:port[/rest]`.
fn hosts(rest: &str) -> Result<(String, Vec<String>, &str), Error> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (credentials, list) = match authority.rfind('@') {
        Some(i) => (format!("{}@", &authority[..i]), &authority[i + 1..]),
        None => (String::new(), authority),
    };
    let mut out = Vec::new();
    for host in list.split(',') {
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !valid {
            return Err(bad("each node must be host:port"));
        }
        out.push(host.to_owned());
    }
    Ok((credentials, out, path))
}

impl Target {
    /// Whether the URL asks for TLS (for Sentinel: to the sentinels and to
    /// the data nodes).
    pub(crate) fn tls(&self) -> bool {
        match self {
            Target::Standalone(url) => crate::tls::is_tls(url),
            Target::Cluster(seeds) => crate::tls::any_tls(seeds),
            Target::Sentinel { sentinels, .. } => crate::tls::any_tls(sentinels),
        }
    }

    /// Parses a URL of one of the three forms above (or their TLS forms).
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        if url.ends_with("#insecure") {
            return Err(bad(
                "#insecure is not supported: the server's certificate is always verified",
            ));
        }
        let (scheme, rest) = if let Some(r) = url.strip_prefix("rediss+") {
            ("rediss", Some(r))
        } else if let Some(r) = url.strip_prefix("redis+") {
            ("redis", Some(r))
        } else {
            ("redis", None)
        };
        let Some(rest) = rest else {
            // Let redis-rs judge the plain form, `redis://` or `rediss://`
            // (and refuse other schemes).
            redis::Client::open(url).map_err(Error::Url)?;
            return Ok(Target::Standalone(url.to_owned()));
        };
        if let Some(rest) = rest.strip_prefix("cluster://") {
            let (credentials, nodes, path) = hosts(rest)?;
            if !path.is_empty() {
                return Err(bad("a Cluster URL has no path (Cluster has one database)"));
            }
            return Ok(Target::Cluster(
                nodes
                    .into_iter()
                    .map(|n| format!("{scheme}://{credentials}{n}"))
                    .collect(),
            ));
        }
        if let Some(rest) = rest.strip_prefix("sentinel://") {
            let (credentials, sentinels, path) = hosts(rest)?;
            let mut parts = path.split('/');
            let master = parts.next().unwrap_or_default();
            if master.is_empty() {
                return Err(bad("a Sentinel URL needs /<master name>"));
            }
            let db = match parts.next() {
                None | Some("") => 0,
                Some(d) => d
                    .parse()
                    .map_err(|_| bad("the database must be a number"))?,
            };
            if parts.next().is_some() {
                return Err(bad("a Sentinel URL is .../<master name>[/db]"));
            }
            return Ok(Target::Sentinel {
                sentinels: sentinels
                    .into_iter()
                    .map(|s| format!("{scheme}://{s}"))
                    .collect(),
                master: master.to_owned(),
                db,
                credentials,
            });
        }
        Err(bad(
            "expected redis+cluster://, redis+sentinel:// or their TLS forms rediss+cluster://, rediss+sentinel://",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::Standalone("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://u:p@a:7000,b:7001").unwrap(),
            Target::Cluster(vec![
                "redis://u:p@a:7000".into(),
                "redis://u:p@b:7001".into()
            ])
        );
        assert_eq!(
            Target::parse("redis+sentinel://s1:26379,s2:26380/shop/3").unwrap(),
            Target::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26380".into()],
                master: "shop".into(),
                db: 3,
                credentials: String::new(),
            }
        );
    }

    #[test]
    fn the_three_tls_forms() {
        let t = Target::parse("rediss://127.0.0.1:6380/2").unwrap();
        assert_eq!(t, Target::Standalone("rediss://127.0.0.1:6380/2".into()));
        assert!(t.tls());
        let t = Target::parse("rediss+cluster://u:p@a:7000,b:7001").unwrap();
        assert_eq!(
            t,
            Target::Cluster(vec![
                "rediss://u:p@a:7000".into(),
                "rediss://u:p@b:7001".into()
            ])
        );
        assert!(t.tls());
        let t = Target::parse("rediss+sentinel://:pw@s1:26379,s2:26380/shop").unwrap();
        assert_eq!(
            t,
            Target::Sentinel {
                sentinels: vec!["rediss://s1:26379".into(), "rediss://s2:26380".into()],
                master: "shop".into(),
                db: 0,
                credentials: ":pw@".into(),
            }
        );
        assert!(t.tls());
        assert!(!Target::parse("redis+cluster://a:1").unwrap().tls());
        assert!(!Target::parse("redis://a:1").unwrap().tls());
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "http://x",
            "redis+cluster://a",
            "redis+cluster://a:7000/1",
            "redis+cluster://a:port",
            "redis+sentinel://s:26379",
            "redis+sentinel://s:26379/m/x",
            "redis+sentinel://s:26379/m/1/2",
            "redis+sentinel://:26379/m",
            "rediss+sentinel://s:26379",
            "rediss+other://a:1",
            "rediss://127.0.0.1:6380#insecure",
            "rediss+cluster://a:7000#insecure",
            "redis+rediss://a:1",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
