//! The notifiers against real counterparts in the test process: a file, a
//! minimal SMTP server on a local socket, an axum server for the webhook.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sessionary_core::{Device, MemoryStore, NewSession, SessionManager, UserId};
use sessionary_notify::webhook::{SIGNATURE_HEADER, verify_signature};
use sessionary_notify::{
    Alert, FileOutbox, Notifier, NotifyError, SmtpConfig, SmtpNotifier, SmtpTls, WebhookNotifier,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

const CHROME_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A new-device alert for a fresh session of `user`.
async fn alert_for(user: &str) -> Result<Alert> {
    let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
    let device = Device::new(Some("203.0.113.7".parse()?), Some(CHROME_LINUX));
    let s = manager
        .create(NewSession::user(UserId::new(user)?).with_device(device))
        .await?
        .session;
    Ok(Alert::new_device(&s, manager.now())?)
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "sessionary-notify-{tag}-{}-{nanos}",
        std::process::id()
    ))
}

#[tokio::test]
async fn file_outbox_round_trip_newest_first() -> Result<()> {
    let dir = temp_dir("outbox");
    let outbox = FileOutbox::new(dir.join("nested").join("outbox.jsonl"));
    assert!(outbox.read_all().await?.is_empty());
    let a1 = alert_for("alice").await?;
    let b = alert_for("bob").await?;
    let a2 = alert_for("alice").await?;
    for a in [&a1, &b, &a2] {
        outbox.send(a).await?;
    }
    assert_eq!(outbox.read_all().await?, [a2.clone(), b, a1.clone()]);
    assert_eq!(outbox.read_for(&UserId::new("alice")?).await?, [a2, a1]);
    // One JSON object per line.
    let text = std::fs::read_to_string(outbox.path())?;
    assert_eq!(text.lines().count(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(outbox.path())?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A line that is not an alert is skipped, not fatal.
    std::fs::write(outbox.path(), format!("{text}not json\n"))?;
    assert_eq!(outbox.read_all().await?.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What the fake SMTP server received.
#[derive(Debug, Default)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
    quit: bool,
}

/// Speaks just enough SMTP (RFC 5321) for one plain-text delivery.
async fn fake_smtp(listener: TcpListener) -> Result<Received> {
    let (sock, _) = listener.accept().await?;
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut got = Received::default();
    w.write_all(b"220 fake.test ESMTP ready\r\n").await?;
    let mut in_data = false;
    while let Some(line) = lines.next_line().await? {
        if in_data {
            if line == "." {
                in_data = false;
                w.write_all(b"250 2.0.0 queued\r\n").await?;
            } else {
                got.data.push_str(line.strip_prefix('.').unwrap_or(&line));
                got.data.push('\n');
            }
            continue;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 fake.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            got.mail_from = line[10..].trim().to_owned();
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            got.rcpt_to.push(line[8..].trim().to_owned());
            b"250 2.1.5 ok\r\n"
        } else if upper == "DATA" {
            in_data = true;
            b"354 end with <CRLF>.<CRLF>\r\n"
        } else if upper == "QUIT" {
            got.quit = true;
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            break;
        } else {
            b"502 5.5.2 not implemented\r\n"
        };
        w.write_all(reply).await?;
    }
    Ok(got)
}

#[tokio::test]
async fn smtp_delivers_the_alert_as_an_email() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(fake_smtp(listener));
    let smtp = SmtpNotifier::new(
        SmtpConfig::new(
            "127.0.0.1",
            "Sessionary <security@example.com>",
            "{user}@example.com",
        )
        .with_port(port)
        .with_tls(SmtpTls::None)
        .with_timeout(Duration::from_secs(5)),
    )?;
    let alert = alert_for("alice").await?;
    smtp.send(&alert).await?;
    let got = tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert_eq!(got.mail_from, "<security@example.com>");
    assert_eq!(got.rcpt_to, ["<alice@example.com>"]);
    assert!(
        got.data
            .contains("Subject: New sign-in to your account from Chrome on Linux"),
        "{}",
        got.data
    );
    assert!(got.data.contains("Network: 203.0.113.0/24"), "{}", got.data);
    assert!(got.data.contains(&format!("Session: {}", alert.session_id)));
    assert!(got.data.contains("To: alice@example.com"), "{}", got.data);
    Ok(())
}

#[test]
fn smtp_config_refuses_bad_addresses_and_hides_the_password() {
    let bad = SmtpNotifier::new(SmtpConfig::new("h", "not an address", "{user}@example.com"));
    assert!(matches!(bad, Err(NotifyError::Address { .. })));
    let bad = SmtpConfig::new("h", "a@example.com", "{user}").validate();
    assert!(matches!(bad, Err(NotifyError::Address { .. })));
    let c = SmtpConfig::new("h", "a@example.com", "{user}@example.com")
        .with_credentials("u", "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[tokio::test]
async fn webhook_posts_the_alert_signed() -> Result<()> {
    use axum::http::{HeaderMap, StatusCode};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, axum::body::Bytes)>();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .route(
            "/down",
            axum::routing::post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let secret = b"0123456789abcdef0123456789abcdef";
    let hook = WebhookNotifier::new(
        &format!("http://{addr}/hook"),
        secret,
        Duration::from_secs(5),
    )?;
    let alert = alert_for("alice").await?;
    hook.send(&alert).await?;
    let (headers, body) = rx
        .recv()
        .await
        .ok_or_else(|| anyhow::anyhow!("no request"))?;
    assert_eq!(headers["content-type"], "application/json");
    let sig = headers[SIGNATURE_HEADER].to_str()?;
    assert!(verify_signature(secret, &body, sig), "{sig}");
    assert!(!verify_signature(b"another secret", &body, sig));
    assert!(!verify_signature(secret, b"{\"tampered\":true}", sig));
    let received: Alert = serde_json::from_slice(&body)?;
    assert_eq!(received, alert);

    // A non-2xx answer is a failure; so is a server that is not there.
    let down = WebhookNotifier::new(
        &format!("http://{addr}/down"),
        secret,
        Duration::from_secs(5),
    )?;
    assert!(matches!(
        down.send(&alert).await,
        Err(NotifyError::Status(503))
    ));
    server.abort();
    let closed = TcpListener::bind("127.0.0.1:0").await?;
    let gone = format!("http://{}/hook", closed.local_addr()?);
    drop(closed);
    let gone = WebhookNotifier::new(&gone, secret, Duration::from_secs(5))?;
    assert!(matches!(gone.send(&alert).await, Err(NotifyError::Http(_))));
    // Only http(s) URLs.
    assert!(matches!(
        WebhookNotifier::new("ftp://example.com/x", secret, Duration::from_secs(5)),
        Err(NotifyError::Url(_))
    ));
    Ok(())
}
