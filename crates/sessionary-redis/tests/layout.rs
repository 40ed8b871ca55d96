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
