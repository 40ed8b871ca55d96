//! The Redis store over TLS, against TLS-only `redis-server` processes whose
//! certificates a CA made at test time signed
//! (`sessionary_testkit::redis_tls`): the whole store conformance suite over
//! `rediss://` (each case on a server of its own) and over
//! `rediss+cluster://` (each case on a 3-master Cluster of its own), a
//! Cluster and a Sentinel set (`rediss+sentinel://`) through the store, `RedisFanout` over TLS, a client certificate for
//! `tls-auth-clients yes`, and the refusals: a certificate another CA signed,
//! a plain `redis://` URL against a TLS port, TLS settings with a plain URL.
//! Without `redis-server` the tests skip (and fail when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use common::{Server, free_port};
use sessionary_core::{EndReason, EventKind, NewSession, SessionManager, SessionStore, UserId};
use sessionary_redis::{Error, RedisFanout, RedisOptions, RedisStore};
use sessionary_testkit::Keeping;
use sessionary_testkit::redis_cluster::RedisCluster;
use sessionary_testkit::redis_sentinel::SentinelSet;
use sessionary_testkit::redis_tls::TlsFiles;
use tokio::time::timeout;

const WITHIN: Duration = Duration::from_secs(5);

/// A fresh CA and a TLS-only server whose certificate it signed, or `None`
/// (skipped) without `redis-server`.
async fn tls_server(test: &str, extra: &'static [&'static str]) -> Option<(Server, TlsFiles)> {
    let started = tokio::task::spawn_blocking(move || {
        let files = TlsFiles::generate("sessionary test CA")?;
        let server = Server::start_tls(free_port(), &files, extra)?;
        Ok::<_, std::io::Error>((server, files))
    })
    .await
    .unwrap();
    match started {
        Ok(s) => Some(s),
        Err(e) => {
            common::skip(test, &format!("cannot start a TLS redis-server: {e}"));
            None
        }
    }
}

fn options(files: &TlsFiles) -> RedisOptions {
    RedisOptions::new().with_tls_ca(files.ca_pem.clone())
}

/// The whole error chain, for messages that must say why.
fn chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn make() -> Option<Arc<dyn SessionStore>> {
    let (server, files) = tls_server("tls conformance", &[]).await?;
    assert!(server.url().starts_with("rediss://"));
    let store = RedisStore::connect(&server.url(), options(&files))
        .await
        .unwrap();
    // The server stops (and the certificates go) when the store drops.
    Some(Keeping::store(Arc::new(store), (server, files)))
}

sessionary_testkit::store_conformance!(optional make);

/// Creates a session through `store`, verifies it, revokes it and sees the
/// revocation.
async fn create_verify_revoke(store: RedisStore) {
    let manager = SessionManager::builder(Arc::new(store)).build().unwrap();
    let alice = UserId::new("alice").unwrap();
    let s = manager.create(NewSession::user(alice)).await.unwrap();
    let token = s.token.encode();
    let verified = manager.verify(&token).await.unwrap();
    assert_eq!(verified.id, s.session.id);
    manager
        .end_session(&s.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    assert_eq!(
        manager.verify(&token).await.unwrap_err().reason(),
        Some("revoked_by_admin")
    );
}

/// A store trusting another CA than the one that signed the servers'
/// certificates does not connect, and says why.
async fn refused_with_another_ca(url: &str) {
    let other = TlsFiles::generate("another CA").unwrap();
    let r = RedisStore::connect(url, options(&other).with_timeout(Duration::from_secs(1))).await;
    let e = r.map(drop).unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
    assert!(
        chain(&e).to_lowercase().contains("certificate"),
        "{}",
        chain(&e)
    );
}

/// A fresh CA and a 3-master TLS-only Cluster whose certificates it signed,
/// or `None` (skipped) without `redis-server`.
async fn tls_cluster(test: &str) -> Option<(RedisCluster, Arc<TlsFiles>)> {
    let started = tokio::task::spawn_blocking(|| {
        let files = Arc::new(TlsFiles::generate("sessionary cluster CA")?);
        let cluster = RedisCluster::start_tls(3, Arc::clone(&files))?;
        Ok::<_, std::io::Error>((cluster, files))
    })
    .await
    .unwrap();
    match started {
        Ok(c) => Some(c),
        Err(e) => {
            common::skip(test, &format!("cannot start a TLS Cluster: {e}"));
            None
        }
    }
}

/// The whole conformance suite on a TLS Cluster too (a fresh one per case):
/// the Cluster connection is built differently (TLS to every node the slot
/// map names), and every script runs through it.
mod cluster_conformance {
    use super::*;

    async fn make() -> Option<Arc<dyn SessionStore>> {
        let (cluster, files) = tls_cluster("tls cluster conformance").await?;
        // A generous timeout, as in `tests/cluster.rs`: the contract is
        // checked here, with bursts of concurrent operations on a shared machine.
        let options = options(&files).with_timeout(Duration::from_secs(10));
        let store = RedisStore::connect(&cluster.url(), options).await.unwrap();
        // The Cluster stops (and the certificates go) when the store drops.
        Some(Keeping::store(Arc::new(store), (cluster, files)))
    }

    sessionary_testkit::store_conformance!(optional make);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls() {
    let Some((cluster, files)) = tls_cluster("tls cluster").await else {
        return;
    };
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    refused_with_another_ca(&url).await;
    let options = options(&files).with_timeout(Duration::from_secs(5));
    let store = RedisStore::connect(&url, options.clone()).await.unwrap();
    create_verify_revoke(store).await;
    // Pub/sub on a Cluster over TLS: published on one node, heard on another.
    let a = RedisFanout::connect_with_options(&url, &options)
        .await
        .unwrap();
    let b = RedisFanout::connect_with_options(&url, &options)
        .await
        .unwrap();
    fanout_carries_a_revocation(a, b, &url, options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls() {
    let started = tokio::task::spawn_blocking(|| {
        let files = Arc::new(TlsFiles::generate("sessionary sentinel CA")?);
        let set = SentinelSet::start_tls(Arc::clone(&files))?;
        Ok::<_, std::io::Error>((set, files))
    })
    .await
    .unwrap();
    let (set, files) = match started {
        Ok(s) => s,
        Err(e) => {
            common::skip(
                "tls sentinel",
                &format!("cannot start a TLS Sentinel set: {e}"),
            );
            return;
        }
    };
    let url = set.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    refused_with_another_ca(&url).await;
    let store = RedisStore::connect(&url, options(&files)).await.unwrap();
    create_verify_revoke(store.clone()).await;
    // The primary the store wrote to is a TLS node of the set.
    let primary = tokio::task::block_in_place(|| set.agreed_primary()).unwrap();
    let keys: Vec<String> =
        tokio::task::block_in_place(|| set.query(primary, redis::cmd("KEYS").arg("sessionary:*")))
            .unwrap();
    assert!(!keys.is_empty());

    // The store listens for `+switch-master` on a sentinel, over TLS.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Sentinels answer no `PUBSUB`; a subscribed client shows `sub=1`.
        let listening = set.sentinel_ports.iter().any(|p| {
            let r: Result<String, _> =
                tokio::task::block_in_place(|| set.query(*p, redis::cmd("CLIENT").arg("LIST")));
            r.is_ok_and(|list| list.contains(" sub=1 "))
        });
        if listening {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no +switch-master subscription"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After a failover the store finds the new primary through the
    // sentinels, over TLS again, and writes there.
    let old = tokio::task::block_in_place(|| set.failover().unwrap());
    let new =
        tokio::task::block_in_place(|| set.wait_new_primary(old, Duration::from_secs(30)).unwrap());
    let manager = SessionManager::builder(Arc::new(store)).build().unwrap();
    let bob = UserId::new("bob").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Unavailable, or still on the old primary, while the switch is
        // under way. A session created on the old primary just before it
        // was demoted is lost with it (replication is asynchronous), so its
        // verification may answer `UnknownSession`: only a session that is
        // on the new primary counts.
        if let Ok(s) = manager.create(NewSession::user(bob.clone())).await {
            let hex: String = s.session.id.0.iter().map(|b| format!("{b:02x}")).collect();
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(format!("sessionary:i:{hex}"));
            let on_new: i64 = tokio::task::block_in_place(|| set.query(new, &cmd)).unwrap();
            if on_new == 1 && manager.verify(&s.token.encode()).await.is_ok() {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store did not move to the new primary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two managers on the same store, each with its own fanout (`a`, `b`): a
/// revocation on B reaches A's subscribers.
async fn fanout_carries_a_revocation(
    a: RedisFanout,
    b: RedisFanout,
    url: &str,
    options: RedisOptions,
) {
    let node = |fanout: RedisFanout, store: RedisStore| {
        SessionManager::builder(Arc::new(store))
            .with_fanout(Arc::new(fanout))
            .build()
            .unwrap()
    };
    let a = node(a, RedisStore::connect(url, options.clone()).await.unwrap());
    let b = node(b, RedisStore::connect(url, options).await.unwrap());
    let mut on_a = a.subscribe();
    let alice = UserId::new("alice").unwrap();
    let s = a.create(NewSession::user(alice)).await.unwrap();
    let token = s.token.encode();
    b.verify(&token).await.unwrap();
    b.end_session(&s.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    loop {
        let e = timeout(WITHIN, on_a.recv()).await.unwrap().unwrap();
        if e.session_id == Some(s.session.id) && matches!(e.kind, EventKind::Ended { .. }) {
            break;
        }
    }
    assert_eq!(
        a.verify(&token).await.unwrap_err().reason(),
        Some("revoked_by_admin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_other_node_over_tls() {
    let Some((server, files)) = tls_server("tls fanout", &[]).await else {
        return;
    };
    let prefix = format!("tlsfanout{}:", free_port());
    let options = options(&files).with_key_prefix(prefix);
    let a = RedisFanout::connect_with_options(&server.url(), &options)
        .await
        .unwrap();
    let b = RedisFanout::connect_with_options(&server.url(), &options)
        .await
        .unwrap();
    assert_eq!(a.channel(), b.channel());
    fanout_carries_a_revocation(a, b, &server.url(), options).await;
}

#[tokio::test]
async fn a_client_certificate_is_shown_when_the_server_asks() {
    let Some((server, files)) =
        tls_server("tls client certificate", &["--tls-auth-clients", "yes"]).await
    else {
        return;
    };
    let quick = || options(&files).with_timeout(Duration::from_secs(1));
    let refused = RedisStore::connect(&server.url(), quick()).await;
    assert!(
        matches!(refused, Err(Error::Connect(_))),
        "{:?}",
        refused.map(drop)
    );
    let with_identity = quick()
        .with_tls_client_identity(files.client_cert_pem.clone(), files.client_key_pem.clone());
    let store = RedisStore::connect(&server.url(), with_identity)
        .await
        .unwrap();
    create_verify_revoke(store).await;
}

#[tokio::test]
async fn a_certificate_another_ca_signed_is_refused() {
    let Some((server, _files)) = tls_server("tls other CA", &[]).await else {
        return;
    };
    let other = TlsFiles::generate("another CA").unwrap();
    let quick = Duration::from_secs(1);
    let r = RedisStore::connect(&server.url(), options(&other).with_timeout(quick)).await;
    let e = r.map(drop).unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
    let why = chain(&e).to_lowercase();
    assert!(why.contains("certificate"), "{why}");
    // The webpki roots do not know the test CA either.
    let r = RedisStore::connect(&server.url(), RedisOptions::new().with_timeout(quick)).await;
    let e = r.map(drop).unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
    assert!(chain(&e).to_lowercase().contains("certificate"), "{e:?}");
    // Nor the fanout.
    let r = RedisFanout::connect_with_options(&server.url(), &options(&other)).await;
    assert!(matches!(r, Err(Error::Connect(_))), "{:?}", r.map(drop));
}

#[tokio::test]
async fn a_plain_url_against_the_tls_port_fails() {
    let Some((server, files)) = tls_server("tls plain url", &[]).await else {
        return;
    };
    let plain = format!("redis://127.0.0.1:{}", server.port);
    let r = RedisStore::connect(
        &plain,
        RedisOptions::new().with_timeout(Duration::from_secs(1)),
    )
    .await;
    let e = r.map(drop).unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
    assert!(chain(&e).contains("rediss://"), "{}", chain(&e));
    // TLS settings with a plain URL are a configuration mistake, said so
    // before connecting.
    let r = RedisStore::connect(&plain, options(&files)).await;
    let e = r.map(drop).unwrap_err();
    assert!(matches!(e, Error::Url(_)), "{e:?}");
    assert!(chain(&e).contains("rediss://"), "{}", chain(&e));
}

#[tokio::test]
async fn tls_settings_are_checked_before_connecting() {
    // Nothing listens there: the settings are refused first.
    let url = format!("rediss://127.0.0.1:{}", free_port());
    for bad in [
        RedisOptions::new().with_tls_ca("not PEM"),
        RedisOptions::new().with_tls_ca(""),
        RedisOptions::new().with_tls_client_identity("", ""),
    ] {
        let r = RedisStore::connect(&url, bad).await;
        assert!(matches!(r, Err(Error::Url(_))), "{:?}", r.map(drop));
    }
    let r = RedisStore::connect(&format!("{url}#insecure"), RedisOptions::new()).await;
    assert!(matches!(r, Err(Error::Url(_))), "{:?}", r.map(drop));
    assert!(RedisOptions::is_tls_url(&url));
    // Debug output never shows the PEM (a client key is a secret).
    let shown = format!(
        "{:?}",
        RedisOptions::new().with_tls_client_identity("CERT-PEM", "KEY-PEM")
    );
    assert!(!shown.contains("KEY-PEM"), "{shown}");
}
