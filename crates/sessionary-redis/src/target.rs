//! Which deployment a Redis URL names: standalone, Cluster or Sentinel.
//!
//! - `redis://[user:password@]host[:port][/db]` — one server (standalone).
//! - `redis+cluster://[user:password@]host:port[,host:port...]` — a Cluster,
//!   given by one or more seed nodes.
//! - `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/db]`
//!   — the primary the sentinels name `<master name>`; credentials are those
//!   of the data nodes (the sentinels are asked without).

use crate::Error;

/// A parsed Redis URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server, as redis-rs reads the URL.
    Standalone(String),
    /// Seed nodes of a Cluster, each as a `redis://` URL with the credentials.
    Cluster(Vec<String>),
    /// Sentinels (`redis://host:port` each) watching `master`.
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
    /// Parses a URL of one of the three forms above.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (credentials, nodes, path) = hosts(rest)?;
            if !path.is_empty() {
                return Err(bad("a Cluster URL has no path (Cluster has one database)"));
            }
            return Ok(Target::Cluster(
                nodes
                    .into_iter()
                    .map(|n| format!("redis://{credentials}{n}"))
                    .collect(),
            ));
        }
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
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
                    .map(|s| format!("redis://{s}"))
                    .collect(),
                master: master.to_owned(),
                db,
                credentials,
            });
        }
        // Let redis-rs judge the plain form (and refuse other schemes).
        redis::Client::open(url).map_err(Error::Url)?;
        Ok(Target::Standalone(url.to_owned()))
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
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
