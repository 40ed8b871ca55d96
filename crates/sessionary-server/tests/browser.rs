//! Real-browser tests: headless Chromium driven through chromedriver
//! (`fantoccini`) against servers running in this process.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium`, `chromium-driver`; `scripts/test` installs them) the tests skip,
//! or fail when `CI=true`. Screenshots of key pages land in
//! `target/browser-screenshots/`.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "browser/harness.rs"]
mod harness;

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use http::{HeaderMap, header};

use harness::{Driver, browser_available};

/// The value of the request cookie `name`.
fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A page with a counter kept in two cookies: `n` (browser-session cookie) and
/// `p` (persistent). Only here to check the harness itself.
fn counter_app() -> Router {
    async fn page(headers: HeaderMap) -> Html<String> {
        let n = request_cookie(&headers, "n").unwrap_or("0");
        let p = request_cookie(&headers, "p").unwrap_or("0");
        Html(format!(
            r#"<!doctype html><html><head><meta charset=utf-8><title>counter</title>
<script>window.pageId = Math.random();</script></head><body>
<p>session cookie: <span id="n">{n}</span>, persistent cookie: <span id="p">{p}</span></p>
<form method="post" action="/inc"><input id="note" name="note"><button id="inc">+1</button></form>
</body></html>"#
        ))
    }
    async fn inc(headers: HeaderMap) -> impl IntoResponse {
        let n: u32 = request_cookie(&headers, "n")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            + 1;
        (
            AppendHeaders([
                (header::SET_COOKIE, format!("n={n}; Path=/; HttpOnly")),
                (header::SET_COOKIE, format!("p={n}; Path=/; Max-Age=3600")),
            ]),
            Redirect::to("/"),
        )
    }
    Router::new().route("/", get(page)).route("/inc", post(inc))
}

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    format!("http://{addr}")
}

/// The harness itself: separate cookie jars per device, clicks and navigation,
/// cookies read through WebDriver, a browser restart that keeps persistent
/// cookies and drops browser-session ones, screenshots.
#[tokio::test]
async fn harness_self_check() {
    if !browser_available("harness_self_check") {
        return;
    }
    let driver = Driver::start("harness_self_check").await;
    let base = serve(counter_app()).await;
    let mut a = driver.device("a").await;
    let b = driver.device("b").await;

    a.goto(&format!("{base}/")).await;
    assert_eq!(a.text("#n").await, "0");
    let page_id = a.js("return window.pageId;").await;
    a.fill("#note", "typed").await;
    assert_eq!(
        a.js("return document.querySelector('#note').value;").await,
        "typed"
    );
    a.click("#inc").await;
    a.wait_js("document.querySelector('#n')?.textContent === '1'")
        .await;
    assert_ne!(a.js("return window.pageId;").await, page_id, "a new page");
    assert_eq!(a.cookie("n").await.as_deref(), Some("1"));
    a.screenshot("counted").await;

    b.goto(&format!("{base}/")).await;
    assert_eq!(b.text("#n").await, "0", "b has its own cookie jar");
    assert_eq!(b.cookie("n").await, None);

    driver.restart(&mut a).await;
    a.goto(&format!("{base}/")).await;
    assert_eq!(a.text("#p").await, "1", "persistent cookie kept");
    assert_eq!(a.text("#n").await, "0", "browser-session cookie dropped");
}
