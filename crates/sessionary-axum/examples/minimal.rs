//! A cart counter with sessions: `cargo run -p sessionary-axum --example minimal`,
//! then `curl -c jar -b jar -X POST localhost:3000/add` a few times.

use std::sync::Arc;

use axum::{Router, routing::get, routing::post};
use sessionary_axum::{Session, SessionConfig, SessionLayer, SessionRejection};
use sessionary_core::{MemoryStore, SessionManager};

/// Reads the cart; a visitor who only reads gets no session and no cookie.
async fn show(session: Session) -> Result<String, SessionRejection> {
    let items: u64 = session.get("items")?.unwrap_or(0);
    Ok(format!("{items} items in the cart\n"))
}

/// Adds an item; the first write creates the session and sets the cookie.
async fn add(session: Session) -> Result<String, SessionRejection> {
    let items = session.get::<u64>("items")?.unwrap_or(0) + 1;
    session.insert("items", items).await?;
    Ok(format!("{items} items in the cart\n"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
    // DANGEROUS, local development only: plain HTTP needs a cookie without
    // `Secure` (and so without the `__Host-` prefix). Use `SessionConfig::new()`
    // behind HTTPS.
    let config = SessionConfig::new().dangerous().allow_insecure_http();
    let app = Router::new()
        .route("/", get(show))
        .route("/add", post(add))
        .layer(SessionLayer::new(manager, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app).await?;
    Ok(())
}
