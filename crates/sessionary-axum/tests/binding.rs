//! Binding of sessions to their device and network, through the layer: the
//! client IP (from the peer, or from `X-Forwarded-For` behind a trusted proxy)
//! and the user agent are compared with the session's device on every request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use sessionary_axum::{
    ClientDevice, CurrentUser, Session, SessionConfig, SessionLayer, TrustedProxies,
};
use sessionary_core::{
    Binding, BindingAction, BindingChange, Device, EndReason, Error, EventKind, IpMatch,
    MemoryStore, MockClock, NewSession, Policy, Privilege, SessionManager, UaMatch, UserId,
};
use tower::ServiceExt as _;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const CHROME_NEXT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 Safari/537.36";
const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";

struct App {
    manager: SessionManager,
    router: Router,
}

/// An app whose signed-in users (role `user`) are bound by `binding`.
fn app(binding: Binding, config: SessionConfig) -> Result<App> {
    let mut policy = Policy::default();
    policy.default.binding = binding;
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_clock(Arc::new(MockClock::new(1_700_000_000_000)))
        .with_policy(policy)
        .build()?;
    let router = Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move { format!("{} aal={}", u.user, u.record.aal) }),
        )
        .route(
            "/where",
            get(|ClientDevice(d): ClientDevice| async move { format!("{:?}", d.ip) }),
        )
        .route(
            "/step-up",
            get(|s: Session| async move {
                if s.record().is_some_and(|r| r.step_up_required()) {
                    "held"
                } else {
                    "free"
                }
            }),
        )
        .layer(SessionLayer::new(manager.clone(), config));
    Ok(App { manager, router })
}

fn config() -> SessionConfig {
    SessionConfig::new()
        .dangerous()
        .allow_insecure_http()
        .with_step_up_path("/step-up")
}

/// A signed-in session created from `ip` with Chrome; its cookie.
async fn sign_in(app: &App, ip: &str) -> Result<String> {
    let issued = app
        .manager
        .create(
            NewSession::user(UserId::new("alice")?)
                .with_device(Device::new(Some(ip.parse()?), Some(CHROME))),
        )
        .await?;
    Ok(format!("session={}", issued.token.encode()))
}

struct Call<'a> {
    cookie: &'a str,
    peer: &'a str,
    ua: &'a str,
    xff: Option<&'a str>,
    html: bool,
}

impl<'a> Call<'a> {
    fn new(cookie: &'a str, peer: &'a str) -> Self {
        Self {
            cookie,
            peer,
            ua: CHROME,
            xff: None,
            html: false,
        }
    }
}

async fn get_path(app: &App, path: &str, c: Call<'_>) -> Result<(StatusCode, String, Response)> {
    let mut req = Request::get(path)
        .header(header::COOKIE, c.cookie)
        .header(header::USER_AGENT, c.ua);
    if let Some(xff) = c.xff {
        req = req.header("x-forwarded-for", xff);
    }
    if c.html {
        req = req.header(header::ACCEPT, "text/html");
    }
    let mut req = req.body(Body::empty())?;
    let peer: IpAddr = c.peer.parse()?;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer, 40_000)));
    let res = app.router.clone().oneshot(req).await?;
    let status = res.status();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let body = String::from_utf8(bytes.to_vec())?;
    Ok((status, body, Response::from_parts(parts, Body::empty())))
}

fn step_up_on_new_network() -> Binding {
    Binding {
        ip: IpMatch::Subnet,
        on_ip_change: BindingAction::StepUp,
        user_agent: UaMatch::Label,
        on_user_agent_change: BindingAction::StepUp,
    }
}

#[tokio::test]
async fn same_slash_24_passes_and_another_network_holds_for_step_up() -> Result<()> {
    let app = app(step_up_on_new_network(), config())?;
    let cookie = sign_in(&app, "203.0.113.7").await?;

    // Another address in the same /24, and a browser update: the same device.
    let mut call = Call::new(&cookie, "203.0.113.200");
    call.ua = CHROME_NEXT;
    let (status, body, _) = get_path(&app, "/me", call).await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice aal=1"));

    // Another network: held. JSON callers get 403 step-up-required...
    let (status, body, _) = get_path(&app, "/me", Call::new(&cookie, "198.51.100.9")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("/problems/step-up-required"), "{body}");
    assert!(body.contains("binding_changed"), "{body}");
    // ... and so does the original network now: the session is held, whoever
    // holds the cookie.
    let (status, _, _) = get_path(&app, "/me", Call::new(&cookie, "203.0.113.7")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // HTML requests are sent to the step-up page, which the held session reaches.
    let mut call = Call::new(&cookie, "198.51.100.9");
    call.html = true;
    let (status, _, res) = get_path(&app, "/me?x=1", call).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers().get(header::LOCATION).context("location")?,
        "/step-up?return_to=/me%3Fx%3D1"
    );
    let (status, body, _) = get_path(&app, "/step-up", Call::new(&cookie, "198.51.100.9")).await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "held"));

    // The session claims nothing meanwhile.
    let token = cookie.trim_start_matches("session=");
    let rec = app.manager.status(token).await?;
    assert!(rec.step_up_required());
    assert_eq!(rec.aal, 0);

    // Passing MFA from the new network releases it and binds it there.
    let issued = app
        .manager
        .regenerate(
            &rec.id,
            Privilege {
                aal: Some(2),
                reauthenticated: true,
                device: Some(Device::new(Some("198.51.100.9".parse()?), Some(CHROME))),
                ..Privilege::default()
            },
        )
        .await?;
    let cookie = format!("session={}", issued.token.encode());
    let (status, body, _) = get_path(&app, "/me", Call::new(&cookie, "198.51.100.77")).await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice aal=2"));
    Ok(())
}

#[tokio::test]
async fn user_agent_change_under_the_strict_policy_revokes_with_its_reason() -> Result<()> {
    let app = app(Binding::strict(), config())?;
    let cookie = sign_in(&app, "203.0.113.7").await?;
    let mut events = app.manager.subscribe();
    let mut call = Call::new(&cookie, "203.0.113.7");
    call.ua = FIREFOX;
    let (status, body, _) = get_path(&app, "/me", call).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("hijack_suspected"), "{body}");
    // Dead for everyone, with its reason.
    let token = cookie.trim_start_matches("session=");
    let err = app.manager.verify(token).await.unwrap_err();
    assert!(
        matches!(err, Error::Ended(EndReason::HijackSuspected)),
        "{err}"
    );
    // Recorded: the mismatch with the new IP, then the end.
    let first = events.recv().await?;
    assert_eq!(
        first.kind,
        EventKind::BindingMismatch {
            change: BindingChange::UserAgent,
            action: BindingAction::Revoke
        }
    );
    assert_eq!(first.ip, Some("203.0.113.7".parse()?));
    let second = events.recv().await?;
    assert_eq!(
        second.kind,
        EventKind::Ended {
            reason: EndReason::HijackSuspected
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_logged_change_lets_the_session_follow_the_device_once() -> Result<()> {
    let app = app(Binding::default(), config())?;
    let cookie = sign_in(&app, "203.0.113.7").await?;
    let mut events = app.manager.subscribe();
    for _ in 0..3 {
        let (status, _, _) = get_path(&app, "/me", Call::new(&cookie, "198.51.100.9")).await?;
        assert_eq!(status, StatusCode::OK);
    }
    let token = cookie.trim_start_matches("session=");
    let rec = app.manager.status(token).await?;
    assert_eq!(rec.device.ip, Some("198.51.100.9".parse()?));
    assert_eq!(rec.aal, 1);
    // One change, one entry.
    let e = events.try_recv()?;
    assert!(matches!(
        e.kind,
        EventKind::BindingMismatch {
            change: BindingChange::Ip,
            action: BindingAction::Log
        }
    ));
    assert!(events.try_recv().is_err());
    Ok(())
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() -> Result<()> {
    // No trusted proxies: the header cannot move the client to another network...
    let app_plain = app(step_up_on_new_network(), config())?;
    let cookie = sign_in(&app_plain, "203.0.113.7").await?;
    let mut call = Call::new(&cookie, "203.0.113.7");
    call.xff = Some("198.51.100.9");
    let (status, _, _) = get_path(&app_plain, "/me", call).await?;
    assert_eq!(status, StatusCode::OK);
    // ... nor hide a real move behind a spoofed "same network" entry.
    let mut call = Call::new(&cookie, "192.0.2.50");
    call.xff = Some("203.0.113.7");
    let (status, _, _) = get_path(&app_plain, "/me", call).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Behind a trusted proxy the header is the client.
    let proxied = config()
        .with_trusted_proxies(TrustedProxies::parse(["127.0.0.1"]).map_err(anyhow::Error::msg)?);
    let app_proxied = app(step_up_on_new_network(), proxied)?;
    let cookie = sign_in(&app_proxied, "203.0.113.7").await?;
    let mut call = Call::new(&cookie, "127.0.0.1");
    call.xff = Some("203.0.113.9");
    let (status, _, _) = get_path(&app_proxied, "/me", call).await?;
    assert_eq!(status, StatusCode::OK);
    let mut call = Call::new(&cookie, "127.0.0.1");
    call.xff = Some("203.0.113.9");
    let (_, body, _) = get_path(&app_proxied, "/where", call).await?;
    assert_eq!(body, "Some(203.0.113.9)");
    let mut call = Call::new(&cookie, "127.0.0.1");
    call.xff = Some("198.51.100.9");
    let (status, _, _) = get_path(&app_proxied, "/me", call).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn a_held_session_gets_no_refresh_tokens_and_loses_its_families() -> Result<()> {
    let app = app(step_up_on_new_network(), config())?;
    let cookie = sign_in(&app, "203.0.113.7").await?;
    let token = cookie.trim_start_matches("session=");
    let rec = app.manager.status(token).await?;
    let refresh = app.manager.issue_refresh(&rec.id).await?;
    let (status, _, _) = get_path(&app, "/me", Call::new(&cookie, "198.51.100.9")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let err = app
        .manager
        .refresh(&refresh.token.encode())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some("binding_changed"));
    assert!(matches!(
        app.manager.issue_refresh(&rec.id).await,
        Err(Error::StepUpRequired)
    ));
    Ok(())
}

#[tokio::test]
async fn unbound_roles_cost_no_comparison() -> Result<()> {
    // With binding off, another network and browser change nothing.
    let app = app(Binding::none(), config())?;
    let cookie = sign_in(&app, "203.0.113.7").await?;
    let mut call = Call::new(&cookie, "198.51.100.9");
    call.ua = FIREFOX;
    let (status, _, _) = get_path(&app, "/me", call).await?;
    assert_eq!(status, StatusCode::OK);
    let token = cookie.trim_start_matches("session=");
    assert_eq!(
        app.manager.status(token).await?.device.ip,
        Some("203.0.113.7".parse()?)
    );
    Ok(())
}

#[tokio::test]
async fn a_browser_update_is_followed_once_without_an_event() -> Result<()> {
    let app = app(Binding::default(), config())?;
    let cookie = sign_in(&app, "203.0.113.7").await?;
    let mut events = app.manager.subscribe();
    for _ in 0..3 {
        let mut call = Call::new(&cookie, "203.0.113.7");
        call.ua = CHROME_NEXT;
        let (status, _, _) = get_path(&app, "/me", call).await?;
        assert_eq!(status, StatusCode::OK);
    }
    // The session now holds the new header, so later requests compare equal
    // bytes instead of parsing both user agents; a browser update is no event.
    let token = cookie.trim_start_matches("session=");
    let rec = app.manager.status(token).await?;
    assert_eq!(rec.device.user_agent.as_deref(), Some(CHROME_NEXT));
    assert_eq!(rec.aal, 1);
    assert!(
        events.try_recv().is_err(),
        "no binding event for a browser update"
    );
    Ok(())
}
