//! The key layout ARCHITECTURE.md documents: one hash tag per owner, every
//! key with a garbage-collection TTL except user data, and an index that the
//! scripts clean when its sessions are gone (no keyspace notifications).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use sessionary_core::store::{Create, Lookup};
use sessionary_core::{Sealed, SessionId, SessionStore, Timestamp, UserId};
use sessionary_redis::{RedisOptions, RedisStore};

const T0: Timestamp = Timestamp(1_767_225_600_000);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn keys_share_the_owner_tag_and_expire_only_as_garbage() {
    let url = common::url();
    let prefix = format!("sessionary-test:{}:", SessionId::generate().unwrap());
    let options = RedisOptions::new().with_key_prefix(prefix.clone());
    let store = match RedisStore::connect(&url, options).await {
        Ok(s) => s,
        Err(e) => {
            common::skip("layout", &format!("cannot connect: {e}"));
            return;
        }
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();

    let (t, r) = sessionary_testkit::record(Some("alice"), T0);
    assert!(matches!(
        store.create(r.clone(), None).await.unwrap(),
        Create::Created { .. }
    ));
    let alice = UserId::new("alice").unwrap();
    store
        .set_user_data(&alice, 0, Sealed::from_bytes(vec![1, 2]))
        .await
        .unwrap()
        .unwrap();

    let tag = format!("{{u:{}}}", hex(b"alice"));
    let session = format!("{prefix}{tag}:s:{}", hex(&r.id.0));
    let index = format!("{prefix}{tag}:ix");
    let data = format!("{prefix}{tag}:d");
    let route = format!("{prefix}t:{}", hex(&t.hash().0));
    let day = 86_400_000i64;
    for key in [&session, &index, &route] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        // 12 h of absolute lifetime + 7 days of grace, measured from now.
        assert!(
            ttl > 7 * day && ttl <= 7 * day + 12 * 3_600_000,
            "{key}: {ttl}"
        );
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&data)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "user data is never collected");
    let route_value: Vec<u8> = redis::cmd("GET")
        .arg(&route)
        .query_async(&mut con)
        .await
        .unwrap();
    // The route, then the snapshot `load` reads with one GET (`s`: a session).
    let nl = route_value.iter().position(|b| *b == b'\n').unwrap();
    assert_eq!(
        route_value[..nl],
        *format!("u:{} {}", hex(b"alice"), hex(&r.id.0)).as_bytes()
    );
    assert_eq!(route_value.get(nl + 1), Some(&b's'));

    // The session hash and its token route (with the snapshot) vanish, as
    // their TTLs (the same, checked above) would make them: the next read of
    // the index drops the member.
    let _: i64 = redis::cmd("DEL")
        .arg(&session)
        .arg(&route)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(store.list_user(&alice, T0).await.unwrap().is_empty());
    let members: i64 = redis::cmd("ZCARD")
        .arg(&index)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(members, 0);
    assert_eq!(store.load(&t.hash(), None).await.unwrap(), Lookup::Missing);
    store.clear().await.unwrap();
}

/// Undecodable routes and snapshots are `StoreError::Corrupt`, from the Rust
/// side (a snapshot of another hash) and from the scripts (a route without a
/// tag), and a snapshot rewrite never recreates a route that is gone.
#[tokio::test]
async fn corrupt_routes_are_corrupt_errors_and_gone_routes_stay_gone() {
    let url = common::url();
    let prefix = format!("sessionary-test:{}:", SessionId::generate().unwrap());
    let options = RedisOptions::new().with_key_prefix(prefix.clone());
    let store = match RedisStore::connect(&url, options).await {
        Ok(s) => s,
        Err(e) => {
            common::skip("layout", &format!("cannot connect: {e}"));
            return;
        }
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (t, r) = sessionary_testkit::record(Some("alice"), T0);
    store.create(r.clone(), None).await.unwrap();
    let route = format!("{prefix}t:{}", hex(&t.hash().0));
    let snapshot: Vec<u8> = redis::cmd("GET")
        .arg(&route)
        .query_async(&mut con)
        .await
        .unwrap();

    // The same snapshot under another token hash.
    let (other, _) = sessionary_testkit::record(Some("alice"), T0);
    let other_route = format!("{prefix}t:{}", hex(&other.hash().0));
    let _: () = redis::cmd("SET")
        .arg(&other_route)
        .arg(&snapshot)
        .query_async(&mut con)
        .await
        .unwrap();
    let e = store.load(&other.hash(), None).await.unwrap_err();
    assert!(
        matches!(e, sessionary_core::StoreError::Corrupt(_)),
        "{e:?}"
    );

    // A route without its tag: the load script refuses it as corrupt.
    let _: () = redis::cmd("SET")
        .arg(&other_route)
        .arg("garbage")
        .query_async(&mut con)
        .await
        .unwrap();
    let e = store.load(&other.hash(), None).await.unwrap_err();
    assert!(
        matches!(e, sessionary_core::StoreError::Corrupt(_)),
        "{e:?}"
    );

    // The route collected early (or evicted): a touch rewrites the session's
    // snapshot but must not bring the route back without a TTL.
    let _: () = redis::cmd("DEL")
        .arg(&route)
        .query_async(&mut con)
        .await
        .unwrap();
    store.touch(&r.id, Timestamp(T0.0 + 600_000)).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&route)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0, "a snapshot rewrite recreated a collected route");
    let _: () = redis::cmd("DEL")
        .arg(&other_route)
        .query_async(&mut con)
        .await
        .unwrap();
    store
        .end(
            &r.id,
            sessionary_core::store::Ending {
                reason: sessionary_core::EndReason::LoggedOut,
                at: T0,
                reason_until: Timestamp(T0.0 + 3_600_000),
                restore_until: None,
            },
        )
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&route)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        exists, 0,
        "ending recreated a collected route without a TTL"
    );
}
