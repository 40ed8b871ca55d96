//! Personalization from the session's history: product pages
//! (`/products/{slug}`) remember the last products viewed in session data
//! (`recent`, newest first, at most [`RECENT`]), and the shop pages show
//! them with simple recommendations. Preferences (theme, language) live in
//! user data and follow the user to every device (see `set_prefs`); the ones
//! chosen while anonymous are carried into the account at sign-in
//! ([`carry_prefs`]).

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;
use sessionary_axum::Session;
use sessionary_core::{Data, UserId};

use super::view::{self, Ctx, csrf_field, layout, tr};
use super::{Demo, DemoError, PRODUCTS, Product, page};

/// Products remembered as recently viewed.
pub(super) const RECENT: usize = 5;

/// What goes well with each product (the "simple" in simple recommendations).
fn related(slug: &str) -> &'static [&'static str] {
    match slug {
        "tea" | "coffee" => &["mug"],
        "mug" => &["tea", "coffee"],
        _ => &[],
    }
}

/// `slug` first in the session's `recent` list, without repeats, at most [`RECENT`].
fn remember(data: &mut Data, slug: &str) {
    let mut recent: Vec<Value> = data
        .get("recent")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    recent.retain(|v| v.as_str() != Some(slug));
    recent.insert(0, slug.into());
    recent.truncate(RECENT);
    data.insert("recent".into(), Value::Array(recent));
}

/// The products recently viewed (newest first), known ones only.
pub(super) fn recent(session: &Session) -> Result<Vec<&'static Product>, DemoError> {
    let slugs: Vec<String> = session.get("recent")?.unwrap_or_default();
    Ok(slugs.iter().filter_map(|s| view::product(s)).collect())
}

/// Up to two products to suggest: those related to what was viewed (most
/// recent first) and not seen yet, then any not seen yet, then related ones
/// seen before; never one in the cart or `except`.
pub(super) fn recommend(
    recent: &[&'static Product],
    cart: &[String],
    except: Option<&str>,
) -> Vec<&'static Product> {
    if recent.is_empty() {
        return Vec::new();
    }
    let taken = |slug: &str| cart.iter().any(|c| c == slug) || except == Some(slug);
    let seen = |slug: &str| recent.iter().any(|p| p.slug == slug);
    let mut out: Vec<&'static Product> = Vec::new();
    let related = || recent.iter().flat_map(|p| related(p.slug).iter().copied());
    let unseen = PRODUCTS.iter().map(|p| p.slug).filter(|s| !seen(s));
    // Related and new first, then anything new, then related seen before.
    let order = related()
        .filter(|s| !seen(s))
        .chain(unseen)
        .chain(related().filter(|s| seen(s)));
    for slug in order {
        if out.len() == 2 {
            break;
        }
        if !taken(slug) && !out.iter().any(|p| p.slug == slug) {
            if let Some(p) = view::product(slug) {
                out.push(p);
            }
        }
    }
    out
}

/// "Recently viewed" and "Recommended for you", for the shop pages.
pub(super) fn sections(
    ctx: &Ctx,
    recent: &[&'static Product],
    recs: &[&'static Product],
) -> Markup {
    html! {
        @if !recent.is_empty() {
            section #recently-viewed {
                h2 { (tr(ctx, "personal.recent")) }
                ul { @for p in recent {
                    li data-product=(p.slug) { a href=(format!("/products/{}", p.slug)) { (tr(ctx, p.name_key)) } }
                } }
            }
        }
        @if !recs.is_empty() {
            section #recommended {
                h2 { (tr(ctx, "personal.recommended")) }
                ul { @for p in recs {
                    li data-product=(p.slug) { a href=(format!("/products/{}", p.slug)) { (tr(ctx, p.name_key)) } }
                } }
            }
        }
    }
}

/// `GET /products/{slug}`: the product, remembered as viewed.
pub(super) async fn product_page(
    State(demo): State<Demo>,
    session: Session,
    Path(slug): Path<String>,
) -> Result<Response, DemoError> {
    let Some(p) = view::product(&slug) else {
        return Err(DemoError::Page(
            axum::http::StatusCode::NOT_FOUND,
            "not-found",
            "error.not_found",
        ));
    };
    // Compare-and-set with retry, like the cart: parallel tabs lose nothing.
    // A reload of the newest product changes nothing: no store write.
    if recent(&session)?.first().map(|r| r.slug) != Some(p.slug) {
        session.update(|data| remember(data, p.slug)).await?;
    }
    let ctx = demo.ctx(&session, true).await?;
    let cart: Vec<String> = session.get("cart")?.unwrap_or_default();
    let recent = recent(&session)?;
    let recs = recommend(&recent, &cart, Some(p.slug));
    let main = html! {
        main #product data-product=(p.slug) {
            h1 { span class={"badge " (p.slug)} { (p.badge) } " " (tr(&ctx, p.name_key)) }
            p.price { (view::price(p.cents)) }
            form method="post" action="/cart/add" {
                (csrf_field(&ctx))
                input type="hidden" name="product" value=(p.slug);
                button.add-to-cart type="submit" data-product=(p.slug) { (tr(&ctx, "shop.add")) }
            }
            (sections(&ctx, &recent, &recs))
            p { a href="/" { (tr(&ctx, "error.back")) } }
        }
    };
    Ok(page(layout(&ctx, p.name_key, &main)))
}

/// At sign-in: the preferences chosen while anonymous (`prefs` in the
/// session's data, carried into the new session) become the user's, over
/// what the user had, so every device follows the latest choice.
pub(super) async fn carry_prefs(demo: &Demo, user: &UserId, prefs: Value) {
    let Some(obj) = prefs.as_object().filter(|o| !o.is_empty()) else {
        return;
    };
    let mut patch = serde_json::Map::new();
    patch.insert("prefs".into(), Value::Object(obj.clone()));
    let apply = |data: &mut Data| sessionary_core::merge_patch(data, &patch);
    if let Err(e) = demo.manager.update_user_data(user, None, apply).await {
        // The sign-in stands; the preferences stay on this session.
        tracing::warn!(error = %e, "anonymous preferences not carried into the account");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(slug: &str) -> &'static Product {
        view::product(slug).unwrap()
    }

    #[test]
    fn recommendations_follow_the_history() {
        assert!(
            recommend(&[], &[], None).is_empty(),
            "nothing viewed, nothing to say"
        );
        let slugs = |v: Vec<&Product>| v.iter().map(|p| p.slug).collect::<Vec<_>>();
        // Tea viewed: the mug goes with it, then coffee (not seen yet).
        assert_eq!(
            slugs(recommend(&[p("tea")], &[], Some("tea"))),
            ["mug", "coffee"]
        );
        // Already in the cart: not suggested.
        assert_eq!(
            slugs(recommend(&[p("tea")], &["mug".into()], Some("tea"))),
            ["coffee"]
        );
        // The mug viewed: tea and coffee.
        assert_eq!(slugs(recommend(&[p("mug")], &[], None)), ["tea", "coffee"]);
    }

    #[test]
    fn recent_is_newest_first_without_repeats_and_bounded() {
        let mut data = Data::new();
        for s in ["tea", "mug", "tea", "a", "b", "c", "d"] {
            remember(&mut data, s);
        }
        let recent: Vec<_> = data["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(recent, ["d", "c", "b", "a", "tea"]);
    }
}
