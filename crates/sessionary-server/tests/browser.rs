//! Real-browser tests of the demo shop (`sessionary_server::demo`): headless
//! Chromium driven through chromedriver (`fantoccini`), the shop served in this
//! process over a `MockClock` (session time moves only by `clock.advance`).
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium`, `chromium-driver`; `scripts/test` installs them) the tests skip,
//! or fail when `CI=true`. Screenshots of key pages land in
//! `target/browser-screenshots/`.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "browser/harness.rs"]
mod harness;
#[path = "browser/shop.rs"]
mod shop;
#[path = "browser/sso.rs"]
mod sso;

use std::time::Duration;

use serde_json::json;

use harness::{Driver, browser_available};
use shop::{
    ADMIN_PW, ALICE_PW, Shop, add_to_cart, cart, fetch_status, submit_login, user_idle_policy,
    wait_sse_open,
};

/// An anonymous visitor fills a cart; signing in keeps it under a new cookie.
#[tokio::test]
async fn anonymous_cart_is_kept_at_sign_in() {
    const TEST: &str = "anonymous_cart_is_kept_at_sign_in";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;

    a.goto(&shop.url("/")).await;
    assert_eq!(a.text("#cart-count").await, "0");
    a.wait_js("document.querySelector('a#nav-signin')").await;
    add_to_cart(&a, "tea", 1).await;
    add_to_cart(&a, "coffee", 2).await;
    assert_eq!(cart(&a).await, ["tea", "coffee"]);
    let anonymous = a.cookie("session").await.expect("a session cookie");
    a.screenshot("anonymous-cart").await;

    a.click("a#nav-signin").await;
    a.wait_js("location.pathname === '/login'").await;
    // A wrong password first: refused, still anonymous, same cookie.
    submit_login(&a, "alice", "not-the-password", false).await;
    a.wait_js("document.querySelector('#login-error')").await;
    assert_eq!(a.page_status().await, 401);
    assert_eq!(
        a.cookie("session").await.map(|c| c.value().to_owned()),
        Some(anonymous.value().to_owned())
    );
    submit_login(&a, "alice", ALICE_PW, false).await;
    a.wait_js("document.querySelector('#whoami')?.textContent.trim() === 'alice'")
        .await;
    assert_eq!(a.js("return location.pathname;").await, "/");
    assert_eq!(a.text("#cart-count").await, "2");
    assert_eq!(cart(&a).await, ["tea", "coffee"]);
    let signed_in = a.cookie("session").await.expect("a session cookie");
    assert_ne!(
        signed_in.value(),
        anonymous.value(),
        "sign-in issues a new token"
    );
    // The contract's cookie: HttpOnly, SameSite=Lax, no Secure (plain HTTP on
    // loopback), a browser-session cookie without remember-me.
    assert_eq!(signed_in.http_only(), Some(true), "{signed_in}");
    assert_eq!(
        signed_in.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax"),
        "{signed_in}"
    );
    assert_ne!(signed_in.secure(), Some(true), "{signed_in}");
    assert_eq!(signed_in.expires(), None, "{signed_in}");
    a.screenshot("signed-in-cart").await;
}

/// Theme and language chosen on one device reach the user's other device
/// without a reload.
#[tokio::test]
async fn preferences_follow_the_user_to_other_devices() {
    const TEST: &str = "preferences_follow_the_user_to_other_devices";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    let b = driver.device("b").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    shop.sign_in(&b, "alice", ALICE_PW, false, "/").await;
    wait_sse_open(&b).await;
    let page_id = b.js("return window.sessionaryPageId;").await;
    assert!(!page_id.is_null(), "window.sessionaryPageId is set");

    let theme = b.js("return document.documentElement.dataset.theme;").await;
    let other = if theme == "dark" { "light" } else { "dark" };
    select(&a, "select#theme", other).await;
    a.wait_js(&format!(
        "document.documentElement.dataset.theme === {other:?}"
    ))
    .await;
    b.wait_js(&format!(
        "document.documentElement.dataset.theme === {other:?}"
    ))
    .await;
    assert_eq!(
        b.js("return window.sessionaryPageId;").await,
        page_id,
        "no reload"
    );
    b.screenshot(&format!("theme-{other}")).await;

    let lang = b.js("return document.documentElement.lang;").await;
    let other = if lang == "fr" { "en" } else { "fr" };
    select(&a, "select#lang", other).await;
    a.wait_js(&format!("document.documentElement.lang === {other:?}"))
        .await;
    b.wait_js(&format!("document.documentElement.lang === {other:?}"))
        .await;
    assert_eq!(
        b.js("return window.sessionaryPageId;").await,
        page_id,
        "no reload"
    );
    b.screenshot(&format!("lang-{other}")).await;

    // Saved for the user: a page rendered afresh on B comes with both.
    let (theme, lang) = (
        a.js("return document.documentElement.dataset.theme;").await,
        a.js("return document.documentElement.lang;").await,
    );
    b.goto(&shop.url("/account/sessions")).await;
    b.wait_js("document.querySelector('table#sessions')").await;
    assert_ne!(b.js("return window.sessionaryPageId;").await, page_id);
    assert_eq!(
        b.js("return document.documentElement.dataset.theme;").await,
        theme
    );
    assert_eq!(b.js("return document.documentElement.lang;").await, lang);
    assert_eq!(
        b.js("return [document.querySelector('select#theme').value, document.querySelector('select#lang').value];")
            .await,
        json!([theme, lang])
    );
}

/// With a 5 min idle timeout: the warning shows in the last minute, "stay signed
/// in" extends; polling the status alone does not, and the page goes to the
/// expired page when the session runs out.
#[tokio::test]
async fn expiry_warning_stay_signed_in_and_polling_does_not_extend() {
    const TEST: &str = "expiry_warning_stay_signed_in_and_polling_does_not_extend";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::with_policy(Some(user_idle_policy(Duration::from_secs(5 * 60)))).await;
    let a = driver.device("a").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    wait_sse_open(&a).await;
    let page_id = a.js("return window.sessionaryPageId;").await;
    assert_eq!(
        a.js("return document.querySelector('#expiry-warning').hidden;")
            .await,
        true,
        "no warning yet"
    );

    // 4 min idle: one minute left.
    shop.clock.advance(Duration::from_secs(4 * 60));
    a.wait_js("document.querySelector('#expiry-warning').hidden === false")
        .await;
    let warning = a.text("#expiry-warning").await;
    assert!(
        warning.contains("Your session will expire in 1 minute"),
        "{warning:?}"
    );
    a.screenshot("expiry-warning").await;

    a.click("#stay-signed-in").await;
    a.wait_js("document.querySelector('#expiry-warning').hidden === true")
        .await;
    // Past the old end (5 min after sign-in): still signed in.
    shop.clock.advance(Duration::from_secs(2 * 60));
    let (status, doc) = fetch_status(&a).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["authenticated"], true, "{doc}");
    assert_eq!(doc["user"], "alice", "{doc}");
    assert_eq!(a.js("return location.pathname;").await, "/");
    assert_eq!(a.js("return window.sessionaryPageId;").await, page_id);

    // Extended at 4 min, so it ends at 9 min; now 6 min. Polling the status
    // every minute never extends it.
    for minute in 7..=8 {
        shop.clock.advance(Duration::from_secs(60));
        let (status, doc) = fetch_status(&a).await;
        assert_eq!(status, 200, "minute {minute}: {doc}");
        assert_eq!(doc["authenticated"], true, "minute {minute}: {doc}");
    }
    shop.clock.advance(Duration::from_secs(61));
    a.wait_js(
        "location.pathname === '/session-expired' && \
         document.querySelector('main#expired')?.dataset.reason === 'expired_idle'",
    )
    .await;
    let (status, doc) = fetch_status(&a).await;
    assert_ne!(doc["authenticated"], true, "status {status}: {doc}");
    a.screenshot("expired-after-polling").await;
}

/// Idle expiry sends the open page to the expired page; signing in there brings
/// the cart back and returns to the page the user was on.
#[tokio::test]
async fn idle_expiry_then_reconnect_restores_cart_and_page() {
    const TEST: &str = "idle_expiry_then_reconnect_restores_cart_and_page";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    add_to_cart(&a, "tea", 1).await;
    add_to_cart(&a, "mug", 2).await;
    a.goto(&shop.url("/account/sessions")).await;
    a.wait_js("document.querySelector('table#sessions')").await;
    wait_sse_open(&a).await;

    // The default policy: 30 min idle.
    shop.clock.advance(Duration::from_secs(31 * 60));
    a.wait_js("location.pathname === '/session-expired'").await;
    assert_eq!(
        a.js("return document.querySelector('main#expired').dataset.reason;")
            .await,
        "expired_idle"
    );
    let return_to = a
        .js("return new URLSearchParams(location.search).get('return_to');")
        .await;
    assert_eq!(return_to, "/account/sessions");
    a.screenshot("expired-idle").await;

    a.fill("form#reconnect-form #username", "alice").await;
    a.fill("form#reconnect-form #password", ALICE_PW).await;
    a.click("#reconnect-submit").await;
    a.wait_js(
        "location.pathname === '/account/sessions' && \
         document.querySelector('#whoami')?.textContent.trim() === 'alice'",
    )
    .await;
    a.goto(&shop.url("/")).await;
    assert_eq!(a.text("#cart-count").await, "2");
    assert_eq!(cart(&a).await, ["tea", "mug"]);
    a.screenshot("reconnected-cart").await;
}

/// Device B ends device A's session in "manage sessions"; A's open page learns
/// it within a second.
#[tokio::test]
async fn ending_a_device_reaches_its_open_page_within_a_second() {
    const TEST: &str = "ending_a_device_reaches_its_open_page_within_a_second";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    let b = driver.device("b").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    wait_sse_open(&a).await;
    shop.sign_in(&b, "alice", ALICE_PW, false, "/account/sessions")
        .await;
    b.wait_js(
        "document.querySelectorAll('table#sessions tr.session[data-session-id]').length === 2",
    )
    .await;
    let current = b
        .text("table#sessions tr.session.current[data-session-id]")
        .await;
    assert!(current.contains("This device"), "{current:?}");
    assert_eq!(
        b.js("return document.querySelectorAll('tr.session.current button.end-session').length;")
            .await,
        0,
        "the current row has no end button"
    );
    b.screenshot("two-sessions").await;

    // One second from the click on B (chromedriver may return from the click
    // only once B's next page has loaded) to A showing the expired page.
    let clicked = std::time::Instant::now();
    b.click("table#sessions tr.session:not(.current) button.end-session")
        .await;
    a.wait_js_for(
        "location.pathname === '/session-expired' && \
         document.querySelector('main#expired')?.dataset.reason === 'revoked_by_user'",
        Duration::from_secs(1).saturating_sub(clicked.elapsed()),
    )
    .await;
    eprintln!(
        "{TEST}: A showed the revocation {:?} after the click",
        clicked.elapsed()
    );
    a.screenshot("revoked").await;
    b.wait_js(
        "document.querySelectorAll('table#sessions tr.session[data-session-id]').length === 1",
    )
    .await;
}

/// A form posted without its CSRF token gets the 403 error page and changes nothing.
#[tokio::test]
async fn form_without_csrf_token_is_refused() {
    const TEST: &str = "form_without_csrf_token_is_refused";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    add_to_cart(&a, "tea", 1).await;

    let removed = a
        .js(
            "const form = document.querySelector('button.add-to-cart[data-product=coffee]').form;\
             const field = form.querySelector('input[name=csrf_token]');\
             if (!field) return false; field.remove(); return true;",
        )
        .await;
    assert_eq!(removed, true, "the coffee form has a csrf_token field");
    a.click("button.add-to-cart[data-product=coffee]").await;
    a.wait_js("document.querySelector('main#error')").await;
    assert_eq!(
        a.js("return document.querySelector('main#error').dataset.status;")
            .await,
        "403"
    );
    let problem = a
        .js("return document.querySelector('main#error').dataset.problem;")
        .await;
    assert!(problem.as_str().is_some_and(|p| !p.is_empty()), "{problem}");
    assert_eq!(a.page_status().await, 403);
    a.screenshot("csrf-refused").await;

    a.goto(&shop.url("/")).await;
    assert_eq!(a.text("#cart-count").await, "1");
    assert_eq!(cart(&a).await, ["tea"]);

    // Another error page: an unknown path.
    a.goto(&shop.url("/no-such-page")).await;
    a.wait_js("document.querySelector('main#error')").await;
    assert_eq!(
        a.js("return document.querySelector('main#error').dataset.status;")
            .await,
        "404"
    );
    assert_eq!(a.page_status().await, 404);
}

/// `/admin`: anonymous visitors are sent to sign in, a user is refused, the admin
/// is admitted.
#[tokio::test]
async fn admin_area_refuses_the_user_and_admits_the_admin() {
    const TEST: &str = "admin_area_refuses_the_user_and_admits_the_admin";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    let b = driver.device("b").await;

    // Anonymous: to the sign-in page, which returns to /admin.
    a.goto(&shop.url("/admin")).await;
    a.wait_js("location.pathname === '/login'").await;
    assert_eq!(
        a.js("return new URLSearchParams(location.search).get('return_to');")
            .await,
        "/admin"
    );
    submit_login(&a, "alice", ALICE_PW, false).await;
    a.wait_js("location.pathname === '/admin' && document.querySelector('main#error')")
        .await;
    assert_eq!(
        a.js("return document.querySelector('main#error').dataset.status;")
            .await,
        "403"
    );
    assert_eq!(a.page_status().await, 403);
    assert!(
        a.js("return document.querySelector('main#admin');")
            .await
            .is_null()
    );
    a.goto(&shop.url("/")).await;
    a.wait_js("document.querySelector('#whoami')").await;
    assert!(
        a.js("return document.querySelector('a#nav-admin');")
            .await
            .is_null(),
        "no admin link for a user"
    );
    a.screenshot("user-refused").await;

    // The admin signs in from a link whose return_to leads off-site: the
    // sign-in only ever returns to a local path.
    b.goto(&shop.url("/login?return_to=//evil.example/steal"))
        .await;
    submit_login(&b, "admin", ADMIN_PW, false).await;
    b.wait_js("document.querySelector('#whoami')?.textContent.trim() === 'admin'")
        .await;
    assert_eq!(
        b.js("return location.origin + location.pathname;").await,
        shop.url("/"),
        "return_to is local paths only"
    );
    b.click("a#nav-admin").await;
    b.wait_js("location.pathname === '/admin' && document.querySelector('main#admin')")
        .await;
    assert_eq!(b.text("main#admin h1").await, "Admin");
    wait_sse_open(&b).await;
    b.screenshot("admin").await;

    // The admin's shorter default idle timeout (10 min) ends the admin's page;
    // alice (30 min) is still signed in.
    shop.clock.advance(Duration::from_secs(10 * 60 + 1));
    b.wait_js(
        "location.pathname === '/session-expired' && \
         document.querySelector('main#expired')?.dataset.reason === 'expired_idle'",
    )
    .await;
    let (status, doc) = fetch_status(&a).await;
    assert_eq!((status, &doc["user"]), (200, &json!("alice")), "{doc}");
}

/// A remember-me sign-in survives closing the browser; a plain one does not.
#[tokio::test]
async fn remember_me_survives_a_browser_restart() {
    const TEST: &str = "remember_me_survives_a_browser_restart";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let mut remembered = driver.device("remembered").await;
    let mut plain = driver.device("plain").await;
    shop.sign_in(&remembered, "alice", ALICE_PW, true, "/")
        .await;
    shop.sign_in(&plain, "alice", ALICE_PW, false, "/").await;
    let cookie = remembered
        .cookie("session")
        .await
        .expect("a session cookie");
    assert!(
        cookie.expires().is_some_and(|e| e.is_datetime()),
        "remember-me: a persistent cookie: {cookie}"
    );
    let cookie = plain.cookie("session").await.expect("a session cookie");
    assert_eq!(
        cookie.expires(),
        None,
        "no remember-me: a browser-session cookie: {cookie}"
    );

    driver.restart(&mut remembered).await;
    driver.restart(&mut plain).await;

    remembered.goto(&shop.url("/")).await;
    assert_eq!(remembered.text("#whoami").await, "alice");
    remembered.screenshot("after-restart").await;
    plain.goto(&shop.url("/")).await;
    plain
        .wait_js("document.querySelector('a#nav-signin')")
        .await;
    assert!(
        plain
            .js("return document.querySelector('#whoami');")
            .await
            .is_null(),
        "signed out after the restart"
    );
    plain.screenshot("after-restart").await;
}

/// Picks `value` in the `<select>` `css` (fires `change`, as a person would).
async fn select(device: &harness::Device, css: &str, value: &str) {
    device
        .wait_js(&format!("document.querySelector({css:?})"))
        .await;
    device
        .client()
        .find(fantoccini::Locator::Css(css))
        .await
        .expect("find the select")
        .select_by_value(value)
        .await
        .expect("select a value");
}

/// "Manage sessions": anonymous visitors are sent to sign in first; "sign out
/// all other devices" ends the other device's open page and keeps this one.
#[tokio::test]
async fn manage_sessions_end_others() {
    const TEST: &str = "manage_sessions_end_others";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    let b = driver.device("b").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    wait_sse_open(&a).await;

    b.goto(&shop.url("/account/sessions")).await;
    b.wait_js("location.pathname === '/login'").await;
    assert_eq!(
        b.js("return new URLSearchParams(location.search).get('return_to');")
            .await,
        "/account/sessions"
    );
    submit_login(&b, "alice", ALICE_PW, false).await;
    b.wait_js(
        "location.pathname === '/account/sessions' && \
         document.querySelectorAll('table#sessions tr.session[data-session-id]').length === 2",
    )
    .await;

    b.click("#end-others").await;
    a.wait_js(
        "location.pathname === '/session-expired' && \
         document.querySelector('main#expired')?.dataset.reason === 'revoked_by_user'",
    )
    .await;
    b.wait_js(
        "location.pathname === '/account/sessions' && \
         document.querySelectorAll('table#sessions tr.session[data-session-id]').length === 1 && \
         document.querySelector('tr.session.current')",
    )
    .await;
    assert_eq!(b.text("#whoami").await, "alice");
    b.screenshot("others-ended").await;
}

/// "Sign out everywhere" on the open "manage sessions" page: the contract says
/// "`#end-all` ends all including this one (then you are at `/`, signed out)".
#[tokio::test]
async fn manage_sessions_end_all_lands_signed_out_on_the_shop() {
    const TEST: &str = "manage_sessions_end_all_lands_signed_out_on_the_shop";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/account/sessions")
        .await;
    wait_sse_open(&a).await;

    a.click("#end-all").await;
    // Either page that follows (the shop, or the expired page) shows the
    // sign-in link; then it stays.
    a.wait_js("document.querySelector('a#nav-signin')").await;
    a.screenshot("all-ended").await;
    assert_eq!(
        a.js("return location.pathname;").await,
        "/",
        "after #end-all this device is at / (it is at {})",
        a.url().await
    );
    assert!(
        a.js("return document.querySelector('#whoami');")
            .await
            .is_null(),
        "signed out"
    );
    a.goto(&shop.url("/account/sessions")).await;
    a.wait_js("location.pathname === '/login'").await;
}

/// The sign-out button signs this device out; the cart does not stay behind.
/// (The contract names no page to land on after `#signout`; see the `#end-all`
/// check in `manage_sessions_end_others_and_end_all` for one that it does.)
#[tokio::test]
async fn sign_out_signs_out_and_leaves_no_cart() {
    const TEST: &str = "sign_out_signs_out_and_leaves_no_cart";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    add_to_cart(&a, "tea", 1).await;
    wait_sse_open(&a).await;
    let signed_in = a.cookie("session").await.expect("a session cookie");
    a.click("#signout").await;
    a.wait_js("document.querySelector('a#nav-signin') && !document.querySelector('#whoami')")
        .await;
    a.screenshot("signed-out").await;
    a.goto(&shop.url("/")).await;
    a.wait_js("document.querySelector('a#nav-signin')").await;
    assert!(
        a.js("return document.querySelector('#whoami');")
            .await
            .is_null(),
        "signed out"
    );
    assert_eq!(a.text("#cart-count").await, "0");
    assert_ne!(
        a.cookie("session").await.map(|c| c.value().to_owned()),
        Some(signed_in.value().to_owned()),
        "the signed-in token is gone"
    );
}

/// Two-step verification: the admin enrols (QR code, key, recovery codes; a
/// wrong first code is refused), after which `/admin` asks for a code and a
/// good one raises the session to AAL 2 under a new cookie. Enrolling long
/// after signing in asks for the password again.
#[tokio::test]
async fn two_step_verification_step_up_for_the_admin_area() {
    const TEST: &str = "two_step_verification_step_up_for_the_admin_area";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("admin").await;
    shop.sign_in(&a, "admin", ADMIN_PW, false, "/").await;
    a.goto(&shop.url("/account/security")).await;
    a.wait_js("document.querySelector('main#security')?.dataset.mfa === 'off'")
        .await;
    assert_eq!(a.text("strong#aal").await, "1");

    // Enrol: the QR code (an SVG the page's CSP lets load), the key, ten
    // recovery codes and the confirm form.
    a.click("#mfa-enrol").await;
    a.wait_js(
        "location.pathname === '/account/security/enrol' && \
         document.querySelector('main#security')?.dataset.mfa === 'enrolling'",
    )
    .await;
    a.wait_js("(i => i && i.complete && i.naturalWidth > 0)(document.querySelector('img#mfa-qr'))")
        .await;
    assert_eq!(
        a.js("return document.querySelectorAll('ul#recovery-codes li').length;")
            .await,
        10
    );
    assert!(
        a.js("return document.querySelector('form#mfa-confirm-form #mfa-code');")
            .await
            .is_object(),
        "the confirm form has the code field"
    );
    a.screenshot("enrol-qr").await;
    let secret = a.text("code#mfa-secret").await;
    assert!(!secret.is_empty(), "the key is shown");

    // A wrong first code: refused, still enrolling.
    a.fill("#mfa-code", &shop.wrong_totp(&secret)).await;
    a.click("#mfa-confirm").await;
    a.wait_js("document.querySelector('#mfa-error')").await;
    assert_eq!(a.page_status().await, 403);
    assert_eq!(
        a.js("return document.querySelector('main#security').dataset.mfa;")
            .await,
        "enrolling"
    );
    // The right one turns it on.
    a.fill("#mfa-code", &shop.totp(&secret)).await;
    a.click("#mfa-confirm").await;
    a.wait_js(
        "location.pathname === '/account/security' && \
         document.querySelector('main#security')?.dataset.mfa === 'on'",
    )
    .await;
    assert_eq!(a.text("strong#aal").await, "1");

    // The admin area now asks for a code first.
    shop.clock.advance(Duration::from_secs(30));
    let before = a.cookie("session").await.expect("a session cookie");
    a.goto(&shop.url("/admin")).await;
    a.wait_js("location.pathname === '/step-up' && document.querySelector('main#step-up')")
        .await;
    assert_eq!(
        a.js("return new URLSearchParams(location.search).get('return_to');")
            .await,
        "/admin"
    );
    a.fill("#step-up-code", &shop.wrong_totp(&secret)).await;
    a.click("#step-up-submit").await;
    a.wait_js("document.querySelector('#step-up-error')").await;
    assert_eq!(a.page_status().await, 403);
    assert_eq!(
        a.cookie("session").await.map(|c| c.value().to_owned()),
        Some(before.value().to_owned()),
        "a refused code changes nothing"
    );
    // A good code (the next time step's): on to the admin area, new token, AAL 2.
    shop.clock.advance(Duration::from_secs(30));
    a.fill("#step-up-code", &shop.totp(&secret)).await;
    a.click("#step-up-submit").await;
    a.wait_js("location.pathname === '/admin' && document.querySelector('main#admin')")
        .await;
    assert_eq!(a.page_status().await, 200);
    let after = a.cookie("session").await.expect("a session cookie");
    assert_ne!(
        after.value(),
        before.value(),
        "step-up regenerates the token"
    );
    a.goto(&shop.url("/account/security")).await;
    a.wait_js("document.querySelector('main#security')?.dataset.mfa === 'on'")
        .await;
    assert_eq!(a.text("strong#aal").await, "2");
    a.screenshot("aal2").await;

    // Enrolling more than 5 minutes after signing in: the password first.
    let b = driver.device("alice").await;
    shop.sign_in(&b, "alice", ALICE_PW, false, "/").await;
    b.goto(&shop.url("/account/security")).await;
    b.wait_js("document.querySelector('main#security')?.dataset.mfa === 'off'")
        .await;
    shop.clock.advance(Duration::from_secs(6 * 60));
    b.click("#mfa-enrol").await;
    b.wait_js("location.pathname === '/reauth' && document.querySelector('#reauth-password')")
        .await;
    assert_eq!(
        b.js("return new URLSearchParams(location.search).get('return_to');")
            .await,
        "/account/security"
    );
    b.screenshot("reauth").await;
    b.fill("#reauth-password", ALICE_PW).await;
    b.click("#reauth-submit").await;
    // The redirect is a plain `GET /account/security`, which shows no
    // enrolment in progress (the enrolment was never started): one more click,
    // now within the new privileged window, shows it.
    b.wait_js(
        "location.pathname === '/account/security' && \
         document.querySelector('main#security')?.dataset.mfa === 'off'",
    )
    .await;
    b.click("#mfa-enrol").await;
    b.wait_js(
        "location.pathname === '/account/security/enrol' && \
         document.querySelector('main#security')?.dataset.mfa === 'enrolling' && \
         document.querySelector('img#mfa-qr')",
    )
    .await;
    b.screenshot("enrol-after-reauth").await;
}

/// Binding and new-device alerts. Alice turns on two-step verification; the
/// test's reverse proxy (a trusted proxy) then reports her at another address
/// in the same /24, which changes nothing, and then on another network: the
/// next page is the step-up page, for every page of the shop. A TOTP code
/// computed by the test continues the session, now bound to the new network,
/// and the outbox shows one new-device alert for it.
#[tokio::test]
async fn a_new_network_asks_for_a_code_and_alerts_the_user() {
    const TEST: &str = "a_new_network_asks_for_a_code_and_alerts_the_user";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let mut policy = sessionary_core::Policy::default();
    policy.default.binding.on_ip_change = sessionary_core::BindingAction::StepUp;
    let shop = Shop::behind_proxy(policy).await;
    let a = driver.device("alice").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;

    // Two-step verification on.
    a.goto(&shop.url("/account/security")).await;
    a.wait_js("document.querySelector('main#security')?.dataset.mfa === 'off'")
        .await;
    a.click("#mfa-enrol").await;
    a.wait_js("document.querySelector('main#security')?.dataset.mfa === 'enrolling'")
        .await;
    let secret = a.text("code#mfa-secret").await;
    a.fill("#mfa-code", &shop.totp(&secret)).await;
    a.click("#mfa-confirm").await;
    a.wait_js(
        "document.querySelector('main#security')?.dataset.mfa === 'on' && \
         document.querySelector('#offer-end-others')",
    )
    .await;

    // The first device of an account is no news.
    a.goto(&shop.url("/outbox")).await;
    a.wait_js("document.querySelector('main#outbox')").await;
    assert_eq!(
        a.js("return document.querySelectorAll('tr.alert').length;")
            .await,
        0
    );

    // Another address in the same /24: the same network.
    shop.set_client_ip([203, 0, 113, 77]);
    a.goto(&shop.url("/account/sessions")).await;
    a.wait_js("document.querySelector('main#manage-sessions')")
        .await;

    // Another network: held, whatever page is asked for.
    shop.set_client_ip([198, 51, 100, 20]);
    a.goto(&shop.url("/account/sessions")).await;
    a.wait_js("location.pathname === '/step-up' && document.querySelector('#binding-notice')")
        .await;
    assert_eq!(a.page_status().await, 200);
    assert_eq!(
        a.js("return new URLSearchParams(location.search).get('return_to');")
            .await,
        "/account/sessions"
    );
    a.goto(&shop.url("/")).await;
    a.wait_js("location.pathname === '/step-up' && document.querySelector('#binding-notice')")
        .await;
    a.screenshot("held-step-up").await;
    a.goto(&shop.url("/step-up?return_to=/account/sessions"))
        .await;
    a.wait_js("document.querySelector('#step-up-code')").await;

    // The code of the next time step (the enrolment spent this one).
    shop.clock.advance(Duration::from_secs(30));
    let before = a.cookie("session").await.expect("a session cookie");
    a.fill("#step-up-code", &shop.totp(&secret)).await;
    a.click("#step-up-submit").await;
    a.wait_js("location.pathname === '/account/sessions' && document.querySelector('main#manage-sessions')")
        .await;
    let after = a.cookie("session").await.expect("a session cookie");
    assert_ne!(
        after.value(),
        before.value(),
        "a new token after the step-up"
    );
    assert_eq!(a.text("tr.session.current td.ip").await, "198.51.100.20");
    a.screenshot("continued").await;

    // The outbox holds one alert: alice, from the new network.
    a.goto(&shop.url("/outbox")).await;
    a.wait_js("document.querySelector('main#outbox')").await;
    assert_eq!(
        a.js("return document.querySelectorAll('tr.alert[data-user=\"alice\"]').length;")
            .await,
        1
    );
    let body = a.text("tr.alert td.body").await;
    assert!(body.contains("198.51.100."), "{body}");
    a.screenshot("outbox").await;
}

/// "Your activity": the pages this session viewed, with the time on each
/// measured by the server between the view and the browser's `pagehide`
/// beacon (the clock moves only by `advance`), drawn as an SVG chart.
#[tokio::test]
async fn your_activity_shows_time_per_page_from_the_browsers_beacons() {
    const TEST: &str = "your_activity_shows_time_per_page_from_the_browsers_beacons";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::start().await;
    let a = driver.device("a").await;
    shop.sign_in(&a, "alice", ALICE_PW, false, "/").await;
    a.wait_js("document.querySelector('#whoami')").await;
    shop.clock.advance(Duration::from_secs(7));
    // Leaving `/` sends its beacon at +7 s; the sessions page is viewed then.
    a.click("#nav-sessions").await;
    a.wait_js("location.pathname === '/account/sessions'").await;
    shop.clock.advance(Duration::from_secs(4));
    a.click("#nav-activity").await;
    a.wait_js("document.querySelector('#activity-chart')").await;
    a.screenshot("your-activity").await;
    let bar = |path: &str| {
        format!(
            "return document.querySelector('#activity-chart g.bar[data-path=\"{path}\"]')?.dataset.ms ?? null;"
        )
    };
    // A beacon may land a moment after the next page is served: look again
    // (the clock stands still, so reloading adds no time to these two).
    let seen = harness::until("the beacons", Duration::from_secs(5), || async {
        let home = a.js(&bar("/")).await;
        let sessions = a.js(&bar("/account/sessions")).await;
        if sessions.as_str() == Some("4000") {
            return Some((home, sessions));
        }
        a.goto(&shop.url("/account/activity")).await;
        None
    })
    .await;
    assert_eq!(seen.0.as_str(), Some("7000"));
    // The sign-in page's beacon, sent as the sign-in rotated the session, is
    // refused (its CSRF token is the old one) and is not an error of the reader's.
    assert!(
        a.js("return document.querySelector('#session-errors');")
            .await
            .is_null()
    );
    assert!(a.text("#session-length").await.starts_with("11 s"));
}

/// The downloads page: 5 files per session, "N left" after each, and the
/// quota page (429) for the sixth; the count is the session's.
#[tokio::test]
async fn downloads_stop_at_five_per_session_with_the_quota_page() {
    const TEST: &str = "downloads_stop_at_five_per_session_with_the_quota_page";
    if !browser_available(TEST) {
        return;
    }
    let driver = Driver::start(TEST).await;
    let shop = Shop::with_policy(Some(sessionary_server::config::default_policy())).await;
    let a = driver.device("a").await;

    a.goto(&shop.url("/")).await;
    a.click("a#nav-downloads").await;
    a.wait_js("location.pathname === '/downloads'").await;
    assert_eq!(a.text("#left-count").await, "5");
    let files: Vec<String> = serde_json::from_value(
        a.js(
            "return [...document.querySelectorAll('#files a.download')].map(e => e.dataset.file);",
        )
        .await,
    )
    .unwrap();
    assert_eq!(files.len(), 6, "{files:?}");

    for (i, file) in files.iter().take(5).enumerate() {
        a.click(&format!("a.download[data-file='{file}']")).await;
        a.wait_js(&format!("location.pathname === '/downloads/{file}'"))
            .await;
        assert_eq!(a.page_status().await, 200);
        assert!(!a.text("body").await.is_empty());
        a.goto(&shop.url("/downloads")).await;
        assert_eq!(a.text("#left-count").await, (4 - i).to_string());
    }
    a.screenshot("downloads-none-left").await;

    // The sixth file: the quota page, in the visitor's language, saying which
    // limit and that it starts again with a new session.
    let last = &files[5];
    a.click(&format!("a.download[data-file='{last}']")).await;
    a.wait_js("document.querySelector('main#error')").await;
    assert_eq!(a.page_status().await, 429);
    assert_eq!(
        a.js("return document.querySelector('main#error').dataset.problem;")
            .await,
        "quota-exceeded"
    );
    assert!(a.text("#quota-limit").await.contains('5'));
    assert!(
        a.text("#quota-reset").await.contains("new session"),
        "{}",
        a.text("#quota-reset").await
    );
    a.screenshot("downloads-quota-page").await;

    // Another browser is another session with 5 of its own.
    let b = driver.device("b").await;
    b.goto(&shop.url("/downloads")).await;
    assert_eq!(b.text("#left-count").await, "5");
}
