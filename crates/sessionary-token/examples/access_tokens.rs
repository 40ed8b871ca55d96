//! Access tokens end to end: keys kept in a file, a session, a token, a key
//! rotation, the JWKS, and revocation at sign-out.
//!
//! `cargo run -p sessionary-token --example access_tokens`

use std::sync::Arc;

use sessionary_core::{Clock, MemoryStore, NewSession, SessionManager, SystemClock, UserId};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The service keeps its keys in its data folder, owner-only.
    let path = std::env::temp_dir().join("sessionary-example-access-token-keys");
    let keys = KeyRing::load_or_generate(&path, SigningAlg::EdDsa)?;

    let revocations = Revocations::new(Arc::clone(&clock));
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_clock(Arc::clone(&clock))
        .with_event_sink(revocations.clone())
        .build()?;
    let tokens = AccessTokens::builder("https://auth.example", "https://api.example", keys)
        .with_clock(clock)
        .with_revocations(revocations)
        .with_role_ttl("admin", std::time::Duration::from_secs(5 * 60))
        .build()?;

    let signed_in = manager
        .create(NewSession::user(UserId::new("alice")?).with_roles(["user"]))
        .await?;
    let at = tokens.issue(&signed_in.session)?;
    println!("access token, expires {}:\n{}\n", at.expires_at, at.token);
    println!("claims: {:?}\n", tokens.verify(&at.token)?);

    // Rotate: the new key signs, the old one keeps verifying for 10 min 30 s.
    tokens.rotate(SigningKey::generate(SigningAlg::EdDsa)?)?;
    tokens.key_ring().save(&path)?;
    println!("JWKS: {}\n", tokens.jwks());
    println!(
        "old token after rotation: {:?}",
        tokens.verify(&at.token).map(|c| c.jti)
    );

    manager.logout(&signed_in.token.encode()).await?;
    println!(
        "after sign-out: {:?}",
        tokens.verify(&at.token).map(|c| c.jti)
    );
    std::fs::remove_file(&path)?;
    Ok(())
}
