//! The demo shop (`sessionary_server::demo`) served in-process with a `MockClock`,
//! and what a visitor does there (see `/work/shared-notes/demo-contract.md`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use serde_json::{Value, json};
use sessionary_core::{MemoryStore, MockClock, Policy, RolePolicy, SessionManager};
use sessionary_server::demo::{DemoOptions, DemoUsers};

use crate::harness::Device;

/// Alice's password (role `user`).
pub(crate) const ALICE_PW: &str = "alice-pw";
/// The administrator's password (role `admin`).
pub(crate) const ADMIN_PW: &str = "admin-pw";

/// A running demo shop.
pub(crate) struct Shop {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// The manager's clock: the only way session time moves.
    pub(crate) clock: MockClock,
    /// The client address the test's "reverse proxy" puts in
    /// `X-Forwarded-For` (only with [`Shop::behind_proxy`]).
    pub(crate) client_ip: Arc<Mutex<IpAddr>>,
    /// The file outbox of new-device alerts (only with [`Shop::behind_proxy`]).
    outbox_dir: Option<PathBuf>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(dir) = &self.outbox_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The default policy, with the role `user` idling out after `idle`.
pub(crate) fn user_idle_policy(idle: Duration) -> Policy {
    let mut policy = Policy::default();
    policy.roles.insert(
        "user".to_owned(),
        RolePolicy {
            idle_timeout: idle,
            ..RolePolicy::default()
        },
    );
    policy
}

impl Shop {
    /// The shop with the default policy.
    pub(crate) async fn start() -> Self {
        Self::with_policy(None).await
    }

    /// The shop; `policy` replaces the default one.
    pub(crate) async fn with_policy(policy: Option<Policy>) -> Self {
        Self::build(policy, false).await
    }

    /// The shop behind a reverse proxy the test controls: every request
    /// reaches it from 127.0.0.1 (a trusted proxy) with `X-Forwarded-For:
    /// <client_ip>`, and new-device alerts go to a file outbox shown at `/outbox`.
    pub(crate) async fn behind_proxy(policy: Policy) -> Self {
        Self::build(Some(policy), true).await
    }

    async fn build(policy: Option<Policy>, proxied: bool) -> Self {
        let clock = MockClock::default();
        let store: Arc<dyn sessionary_core::SessionStore> = Arc::new(MemoryStore::new());
        // The audit log and activity as `sessionary serve` runs them.
        let audit = sessionary_core::AuditLog::spawn(Arc::clone(&store), Arc::new(clock.clone()));
        let activity = Arc::new(sessionary_core::activity::Activity::new(Arc::clone(&audit)));
        let mut builder = SessionManager::builder(store)
            .with_clock(Arc::new(clock.clone()))
            .with_event_sink(audit.clone());
        if let Some(policy) = policy {
            builder = builder.with_policy(policy);
        }
        let manager = builder.build().expect("build the session manager");
        let mut options =
            DemoOptions::new(DemoUsers::from_passwords(ALICE_PW, ADMIN_PW).expect("demo accounts"));
        let client_ip = Arc::new(Mutex::new(IpAddr::from([203, 0, 113, 10])));
        let mut outbox_dir = None;
        if proxied {
            options = options.with_trusted_proxies(
                sessionary_axum::TrustedProxies::parse(["127.0.0.1"]).expect("proxy list"),
            );
            let dir = std::env::temp_dir().join(format!(
                "sessionary-browser-outbox-{}-{}",
                std::process::id(),
                sessionary_core::Clock::now(&clock).as_millis()
                    ^ (Arc::as_ptr(&client_ip) as usize as i64)
            ));
            let outbox = Arc::new(sessionary_notify::FileOutbox::new(dir.join("outbox.jsonl")));
            let alerts = Arc::new(sessionary_notify::NewDeviceAlerts::new(
                manager.clone(),
                outbox.clone(),
            ));
            options = options.with_alerts(alerts).with_outbox(outbox);
            outbox_dir = Some(dir);
        }
        let mut app: axum::Router = sessionary_server::demo::router(manager, options)
            .layer(axum::Extension(activity))
            .layer(axum::Extension(audit));
        if proxied {
            let ip = Arc::clone(&client_ip);
            app = app.layer(axum::middleware::map_request(
                move |mut req: axum::extract::Request| {
                    let ip = *ip.lock();
                    async move {
                        req.headers_mut().insert(
                            "x-forwarded-for",
                            http::HeaderValue::try_from(ip.to_string()).expect("an address"),
                        );
                        req
                    }
                },
            ));
        }
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve the demo");
        });
        Self {
            base: format!("http://{addr}"),
            clock,
            client_ip,
            outbox_dir,
            server,
        }
    }

    /// Moves the client to another address (as seen through the proxy).
    pub(crate) fn set_client_ip(&self, ip: [u8; 4]) {
        *self.client_ip.lock() = IpAddr::from(ip);
    }

    /// The absolute URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The TOTP code an authenticator app holding `secret` (base32) shows at
    /// the shop's clock's time. Each time step's code is accepted once:
    /// advance the clock 30 s before using another.
    pub(crate) fn totp(&self, secret: &str) -> String {
        let now = sessionary_core::Clock::now(&self.clock);
        sessionary_mfa::testing::code_at(secret, now).expect("a TOTP code")
    }

    /// Six digits that are no code of `secret` the shop accepts now (this
    /// time step, the previous or the next one).
    pub(crate) fn wrong_totp(&self, secret: &str) -> String {
        let now = sessionary_core::Clock::now(&self.clock);
        let valid: Vec<String> = [-30_000, 0, 30_000]
            .into_iter()
            .map(|ms| {
                sessionary_mfa::testing::code_at(secret, now.add_millis(ms)).expect("a TOTP code")
            })
            .collect();
        (0..=9)
            .map(|d: u8| char::from(b'0' + d).to_string().repeat(6))
            .find(|c| !valid.contains(c))
            .expect("three codes cannot rule out ten candidates")
    }

    /// Signs `user` in through `/login?return_to=<return_to>` and waits for the
    /// page it lands on to show the user.
    pub(crate) async fn sign_in(
        &self,
        device: &Device,
        user: &str,
        password: &str,
        remember: bool,
        return_to: &str,
    ) {
        device
            .goto(&self.url(&format!("/login?return_to={return_to}")))
            .await;
        submit_login(device, user, password, remember).await;
        device
            .wait_js(&format!(
                "location.pathname === {return_to:?} && \
                 document.querySelector('#whoami')?.textContent.trim() === {user:?}"
            ))
            .await;
    }
}

/// Fills and submits `form#login-form` on the current page.
pub(crate) async fn submit_login(device: &Device, user: &str, password: &str, remember: bool) {
    device
        .wait_js("document.querySelector('form#login-form')")
        .await;
    device.fill("#username", user).await;
    device.fill("#password", password).await;
    let checked = device
        .js("return document.querySelector('#remember').checked;")
        .await;
    if checked != json!(remember) {
        device.click("#remember").await;
    }
    device.click("#login-submit").await;
}

/// The products in `#cart`, in order.
pub(crate) async fn cart(device: &Device) -> Vec<String> {
    let v = device
        .js(
            "return [...document.querySelectorAll('#cart li[data-product]')]\
             .map(li => li.dataset.product);",
        )
        .await;
    serde_json::from_value(v).expect("a list of products")
}

/// Clicks "add to cart" for `product` on the shop page and waits for the page
/// that follows to count `expected` items.
pub(crate) async fn add_to_cart(device: &Device, product: &str, expected: usize) {
    let before = device.js("return window.sessionaryPageId;").await;
    device
        .click(&format!("button.add-to-cart[data-product={product}]"))
        .await;
    device
        .wait_js(&format!(
            "window.sessionaryPageId !== {before} && location.pathname === '/' && \
             document.querySelector('#cart-count')?.textContent.trim() === '{expected}'"
        ))
        .await;
}

/// Waits until the page's EventSource on `/session/events` is connected.
pub(crate) async fn wait_sse_open(device: &Device) {
    device
        .wait_js("document.documentElement.dataset.sse === 'open'")
        .await;
}

/// `GET /session/status` from the page (same cookies): `[http status, body]`.
pub(crate) async fn fetch_status(device: &Device) -> (u16, Value) {
    let v = device
        .js(
            "return fetch('/session/status', {credentials: 'same-origin', cache: 'no-store'})\
             .then(async r => [r.status, await r.json().catch(() => null)]);",
        )
        .await;
    let status = v[0].as_u64().expect("an HTTP status");
    (u16::try_from(status).expect("status fits"), v[1].clone())
}
