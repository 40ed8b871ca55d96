//! `sso_client`: one instance of the example app (run it twice as app A and app B).

use clap::Parser;

/// An app that signs in through Sessionary's OpenID Connect provider.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Name shown on the pages.
    #[arg(long, default_value = "App A")]
    name: String,
    /// The provider's issuer URL.
    #[arg(long, env = "SSO_ISSUER", default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// Client id registered at the provider.
    #[arg(long, default_value = "app-a")]
    client_id: String,
    /// Client secret (omit for a public client).
    #[arg(long, env = "SSO_CLIENT_SECRET")]
    client_secret: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3001")]
    listen: std::net::SocketAddr,
    /// Where browsers reach this app (defaults to http://localhost:<port>).
    #[arg(long)]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://localhost:{}", args.listen.port()));
    let config = sso_client::Config {
        cookie_name: format!("sso-{}", args.client_id),
        name: args.name,
        issuer: args.issuer,
        client_id: args.client_id,
        client_secret: args.client_secret,
        public_url: public_url.clone(),
    };
    let app = sso_client::app(config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("{public_url}/ is up; sign in there");
    axum::serve(listener, app).await?;
    Ok(())
}
