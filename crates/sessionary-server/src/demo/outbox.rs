//! New-device alerts in the demo: sign-ins are watched
//! ([`sessionary_notify::NewDeviceAlerts`]) and `GET /outbox` is the demo's
//! mailbox, listing every alert of the file outbox newest first.
//!
//! The page shows all users' alerts to any visitor: it stands in for the
//! users' mail, which a real deployment sends by SMTP or webhook instead.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use sessionary_axum::Session;
use sessionary_core::SessionRecord;
use sessionary_notify::{Alert, FileOutbox, NewDeviceAlerts};

use super::view::{Ctx, layout, tr, when};
use super::{Demo, DemoError, DemoOptions, internal, page};

/// The watcher of sign-ins and the outbox the page shows, when configured.
#[derive(Clone, Debug, Default)]
pub(super) struct Alerts {
    watcher: Option<Arc<NewDeviceAlerts>>,
    outbox: Option<Arc<FileOutbox>>,
}

impl Alerts {
    /// After a successful sign-in: records the device, alerts if it is new.
    /// Never fails the sign-in.
    pub(super) async fn sign_in(&self, session: &SessionRecord) {
        crate::check_new_device(self.watcher.as_deref(), session).await;
    }
}

impl DemoOptions {
    /// Watches the demo's sign-ins for new devices with `alerts`.
    #[must_use]
    pub fn with_alerts(mut self, alerts: Arc<NewDeviceAlerts>) -> Self {
        self.alerts.watcher = Some(alerts);
        self
    }

    /// Lists `outbox` at `/outbox` (without one, the page says alerts go elsewhere).
    #[must_use]
    pub fn with_outbox(mut self, outbox: Arc<FileOutbox>) -> Self {
        self.alerts.outbox = Some(outbox);
        self
    }
}

/// `GET /outbox`.
pub(super) async fn outbox_page(
    State(demo): State<Demo>,
    session: Session,
) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&session, false).await?;
    let alerts = match &demo.alerts.outbox {
        Some(outbox) => Some(outbox.read_all().await.map_err(|e| {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot read the outbox"
            );
            internal()
        })?),
        None => None,
    };
    Ok(page(render(&ctx, alerts.as_deref())))
}

/// The mailbox: `None` when alerts do not go to the outbox.
fn render(ctx: &Ctx, alerts: Option<&[Alert]>) -> Markup {
    let main = html! {
        main #outbox {
            h1 { (tr(ctx, "outbox.title")) }
            @match alerts {
                None => p #outbox-off { (tr(ctx, "outbox.off")) },
                Some([]) => {
                    p { (tr(ctx, "outbox.intro")) }
                    p #outbox-empty { (tr(ctx, "outbox.empty")) }
                }
                Some(list) => {
                    p { (tr(ctx, "outbox.intro")) }
                    table #alerts {
                        thead { tr {
                            th { (tr(ctx, "outbox.time")) } th { (tr(ctx, "outbox.user")) }
                            th { (tr(ctx, "outbox.subject")) } th { (tr(ctx, "outbox.message")) }
                        } }
                        tbody {
                            @for a in list {
                                tr.alert data-kind=(a.kind) data-user=(a.user.as_str()) data-alert-id=(a.id) {
                                    td.when { (when(a.at)) }
                                    td.user { (a.user.as_str()) }
                                    td.subject { (a.subject) }
                                    td.body { pre { (a.body) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "outbox.title", &main)
}
