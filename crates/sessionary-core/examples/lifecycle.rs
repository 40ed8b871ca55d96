//! A session's life in a few lines: anonymous cart, sign-in (new token, cart kept),
//! a request, a privilege change, sign-out — and what the old tokens say.
//!
//! Run with `cargo run -p sessionary-core --example lifecycle`.

use std::sync::Arc;

use serde_json::json;
use sessionary_core::{MemoryStore, NewSession, Privilege, SessionManager, UserId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let sessions = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;

    // A visitor puts tea in the cart: the first write creates the anonymous session.
    let visitor = sessions.create(NewSession::anonymous()).await?;
    sessions
        .update_data(&visitor.session.id, None, |d| {
            d.insert("cart".into(), json!(["tea"]));
        })
        .await?;

    // Sign-in: a new session and token; the cart comes along.
    let alice = UserId::new("alice")?;
    let old = visitor.token.encode();
    let signed_in = sessions
        .login(
            Some(&old),
            NewSession::user(alice.clone()).with_roles(["user"]),
        )
        .await?;
    let token = signed_in.token.encode();
    let session = sessions.verify(&token).await?;
    println!("signed in, cart = {}", sessions.data(&session)?["cart"]);
    if let Err(e) = sessions.verify(&old).await {
        println!("old token: {e}");
    }

    // Becoming an admin regenerates the token again; admin timeouts apply.
    let admin = sessions
        .regenerate(
            &session.id,
            Privilege {
                roles: Some(vec!["admin".into()]),
                ..Privilege::default()
            },
        )
        .await?;
    println!(
        "admin idle timeout: {} min",
        admin.session.idle_timeout_ms / 60_000
    );

    // Manage sessions: list, then sign out everywhere.
    for s in sessions.list(&alice).await? {
        println!("session {} since {}", s.id, s.created_at);
    }
    sessions.logout(&admin.token.encode()).await?;
    if let Err(e) = sessions.verify(&admin.token.encode()).await {
        println!("after sign-out: {e} (reason {:?})", e.reason());
    }
    Ok(())
}
