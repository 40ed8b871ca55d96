//! Single sign-on in a real browser: Sessionary as the OpenID Connect provider
//! (the demo served in-process) and two instances of `examples/sso_client` as
//! app A and app B.
//!
//! The three sites are on three hosts: the provider on `127.0.0.1`, app A on
//! `localhost`, app B on `127.0.0.2`. So no site can see or clear another's
//! cookies (a sign-out's `Clear-Site-Data: "cookies"` covers its own host only),
//! and app A can only learn of the sign-out on B through the back-channel.

use std::net::SocketAddr;
use std::sync::Arc;

use sessionary_core::{MemoryStore, SessionManager};
use sessionary_server::demo::{DemoOptions, DemoUsers};
use sessionary_server::oidc::{Client, IdTokenKeys, OidcSettings, Provider};
use sessionary_server::{ApiKeys, AppState, app_with_demo};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};
use tokio::net::TcpListener;

use crate::harness::{Driver, TIMEOUT, browser_available, until};
use crate::shop::{ADMIN_PW, ALICE_PW, submit_login};

/// The provider and the two apps, each serving on its own host.
struct Sites {
    provider: String,
    app_a: String,
    app_b: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Sites {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn registered(id: &str, name: &str, base: &str, alg: SigningAlg) -> Client {
    Client {
        id: id.to_owned(),
        name: name.to_owned(),
        secret: Some(format!("{id}-secret")),
        redirect_uris: vec![format!("{base}/callback")],
        post_logout_redirect_uris: vec![format!("{base}/")],
        backchannel_logout_uri: Some(format!("{base}/backchannel-logout")),
        id_token_alg: alg,
    }
}

fn serve(listener: TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    })
}

impl Sites {
    async fn start() -> Self {
        let op_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b_listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let provider = format!("http://{}", op_listener.local_addr().unwrap());
        let app_a = format!(
            "http://localhost:{}",
            a_listener.local_addr().unwrap().port()
        );
        let app_b = format!("http://{}", b_listener.local_addr().unwrap());

        // The provider as `sessionary serve` wires it, on the memory store.
        let settings = OidcSettings {
            issuer: None,
            clients: vec![
                registered("app-a", "App A", &app_a, SigningAlg::EdDsa),
                registered("app-b", "App B", &app_b, SigningAlg::Es256),
            ],
        };
        let clock: Arc<dyn sessionary_core::Clock> = Arc::new(sessionary_core::SystemClock);
        let revocations = Revocations::new(Arc::clone(&clock));
        let (logouts, queue) = sessionary_server::oidc::logout_channel();
        let seal = sessionary_core::KeyRing::generate(1).unwrap();
        let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
            .with_keys(seal.clone())
            .with_event_sink(revocations.clone())
            .with_event_sink(logouts)
            .build()
            .unwrap();
        let tokens = Arc::new(
            AccessTokens::builder(
                "sessionary",
                "sessionary-api",
                KeyRing::new(SigningKey::generate(SigningAlg::EdDsa).unwrap()),
            )
            .with_revocations(revocations)
            .build()
            .unwrap(),
        );
        let op = Arc::new(
            Provider::new(
                &settings,
                provider.clone(),
                IdTokenKeys::generate(&settings.algs()).unwrap(),
                manager.clone(),
                Arc::clone(&tokens),
                seal,
            )
            .unwrap(),
        );
        let worker = op.spawn_logout_worker(queue);
        let users = DemoUsers::from_passwords(ALICE_PW, ADMIN_PW).unwrap();
        let state = AppState::new(manager, ApiKeys::new(["k".repeat(40)])).with_tokens(tokens);
        let op_app = app_with_demo(state, DemoOptions::new(users).with_oidc(op));
        let mut tasks = vec![worker, serve(op_listener, op_app)];

        // The apps discover the provider, so they start after it.
        for (id, name, base, listener) in [
            ("app-a", "App A", &app_a, a_listener),
            ("app-b", "App B", &app_b, b_listener),
        ] {
            let app = sso_client::app(sso_client::Config {
                name: name.to_owned(),
                issuer: provider.clone(),
                client_id: id.to_owned(),
                client_secret: Some(format!("{id}-secret")),
                public_url: base.clone(),
                cookie_name: format!("sso-{id}"),
            })
            .await
            .expect("the app discovers the provider");
            tasks.push(serve(listener, app));
        }
        Self {
            provider,
            app_a,
            app_b,
            tasks,
        }
    }
}

/// Sign in on app A with the password; app B signs in without one; both app
/// sessions show under the central session in "Manage sessions"; signing out
/// on app B ends the central session, and app A's session ends through the
/// back-channel logout token while A's cookie is still in the browser.
#[tokio::test]
async fn one_sign_in_serves_two_apps_and_one_sign_out_ends_both() {
    const TEST: &str = "one_sign_in_serves_two_apps_and_one_sign_out_ends_both";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let sites = Sites::start().await;
    let b = driver.device("browser").await;

    // App A: not signed in; "Sign in with Sessionary" leads to the provider's
    // sign-in page, the password brings the browser back signed in.
    b.goto(&format!("{}/", sites.app_a)).await;
    assert_eq!(b.text("#status").await, "Not signed in.");
    b.click("#sign-in").await;
    b.wait_js(&format!(
        "location.origin === '{}' && location.pathname === '/login'",
        sites.provider
    ))
    .await;
    b.screenshot("sso-provider-login").await;
    submit_login(&b, "alice", ALICE_PW, false).await;
    b.wait_js(&format!(
        "location.origin === '{}' && document.querySelector('#user')?.textContent === 'alice'",
        sites.app_a
    ))
    .await;
    let sid_a = b.text("#sid").await;
    assert!(
        !sid_a.is_empty() && sid_a != "-",
        "the ID token names the central session"
    );
    b.screenshot("sso-app-a-signed-in").await;

    // App B: one click, no password: the provider answers from the central
    // session and the browser lands back on B signed in, same central session.
    b.goto(&format!("{}/", sites.app_b)).await;
    assert_eq!(b.text("#status").await, "Not signed in.");
    b.click("#sign-in").await;
    b.wait_js(&format!(
        "location.origin === '{}' && document.querySelector('#user')?.textContent === 'alice'",
        sites.app_b
    ))
    .await;
    assert_eq!(b.text("#sid").await, sid_a);
    b.screenshot("sso-app-b-signed-in").await;

    // "Manage sessions" at the provider: the central session, and under it
    // the two app sessions with their names.
    b.goto(&format!("{}/account/sessions", sites.provider))
        .await;
    b.wait_js("document.querySelector('#manage-sessions')")
        .await;
    let apps = b
        .js(&format!(
            "return [...document.querySelectorAll('tr.app-session')]\
             .filter(tr => tr.dataset.parentId === '{sid_a}')\
             .map(tr => tr.querySelector('.app-name').textContent).sort();"
        ))
        .await;
    assert_eq!(apps, serde_json::json!(["App A", "App B"]));
    let central = b
        .js(&format!(
            "return !!document.querySelector('tr.session.current[data-session-id=\"{sid_a}\"]');"
        ))
        .await;
    assert_eq!(
        central,
        serde_json::json!(true),
        "the central session is this browser's"
    );
    b.screenshot("sso-manage-sessions").await;

    // Sign out on B: B ends its session and sends the browser to the provider's
    // logout endpoint, which ends the central session and comes back to B.
    b.goto(&format!("{}/", sites.app_b)).await;
    b.click("#sign-out").await;
    b.wait_js(&format!(
        "location.origin === '{}' && document.querySelector('#status')?.textContent === 'Not signed in.'",
        sites.app_b
    ))
    .await;

    // App A still has its cookie (nothing cleared it: another host), yet its
    // session ended: the provider's back-channel logout token reached A.
    b.goto(&format!("{}/", sites.app_a)).await;
    assert!(
        b.cookie("sso-app-a").await.is_some(),
        "app A's cookie is still in the browser"
    );
    until("app A signed out by the back-channel", TIMEOUT, || {
        let b = &b;
        async move {
            b.client().refresh().await.ok()?;
            (b.text("#status").await == "Not signed in.").then_some(())
        }
    })
    .await;
    b.screenshot("sso-app-a-signed-out").await;

    // And the provider's own session is over: the shop offers to sign in.
    b.goto(&format!("{}/", sites.provider)).await;
    b.wait_js("document.querySelector('a#nav-signin')").await;
}
