//! TOTP step-up against `MemoryStore` with a `MockClock`: enrolment, window
//! edges, replay, concurrency, recovery codes, step-up, the privileged window
//! and the rate limit. Each test fails if the rule it names is removed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sessionary_core::{
    Clock, Issued, MemoryStore, MockClock, NewSession, SessionManager, SessionStore, Timestamp,
    UserId,
};
use sessionary_mfa::testing::code_at;
use sessionary_mfa::{Enrolment, Error, MFA_KEY, Mfa, Verified, privileged};

const STEP: Duration = Duration::from_secs(30);

struct World {
    clock: MockClock,
    manager: SessionManager,
    mfa: Mfa,
}

fn world() -> Result<World> {
    world_on(Arc::new(MemoryStore::new()))
}

/// Over a store that yields before each user-data read and write (as a
/// networked store waits), so concurrent tasks interleave between the two.
fn yielding_world() -> Result<World> {
    world_on(Arc::new(sessionary_testkit::YieldingStore::default()))
}

fn world_on(store: Arc<dyn SessionStore>) -> Result<World> {
    // 2026-01-01T00:00:00Z: the first millisecond of a 30 s step.
    let clock = MockClock::default();
    assert_eq!(clock.now().as_millis() % 30_000, 0);
    let manager = SessionManager::builder(store)
        .with_clock(Arc::new(clock.clone()))
        .build()?;
    let mfa = Mfa::new(manager.clone(), "Sessionary");
    Ok(World {
        clock,
        manager,
        mfa,
    })
}

impl World {
    async fn sign_in(&self, user: &str) -> Result<Issued> {
        Ok(self
            .manager
            .create(NewSession::user(UserId::new(user)?).with_aal(1))
            .await?)
    }

    /// Signs `user` in, enrols and confirms, then moves the clock 10 steps on
    /// (so the confirming code's step is well in the past).
    async fn enrolled(&self, user: &str) -> Result<(Issued, Enrolment)> {
        let issued = self.sign_in(user).await?;
        let enrolment = self.mfa.begin_enrolment(&issued.session.id).await?;
        let code = self.code(&enrolment, 0)?;
        self.mfa
            .confirm_enrolment(&issued.session.id, &code)
            .await?;
        self.clock.advance(STEP * 10);
        Ok((issued, enrolment))
    }

    /// The code an authenticator shows `steps` steps from now.
    fn code(&self, enrolment: &Enrolment, steps: i64) -> Result<String> {
        let at = self.clock.now().add_millis(steps * 30_000);
        Ok(code_at(&enrolment.secret_base32, at)?)
    }
}

fn user(name: &str) -> UserId {
    UserId::new(name).expect("valid user id")
}

#[test]
fn codes_follow_the_rfc_6238_test_vectors() -> Result<()> {
    // RFC 6238 appendix B, SHA-1, secret "12345678901234567890" (8 digits there;
    // the six-digit code is the last six).
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(code_at(secret, Timestamp(59_000))?, "287082");
    assert_eq!(code_at(secret, Timestamp(1_111_111_109_000))?, "081804");
    assert_eq!(code_at(secret, Timestamp(2_000_000_000_000))?, "279037");
    Ok(())
}

#[tokio::test]
async fn enrolment_is_not_active_until_confirmed() -> Result<()> {
    let w = world()?;
    let alice = w.sign_in("alice").await?;
    let id = alice.session.id;
    let enrolment = w.mfa.begin_enrolment(&id).await?;
    assert!(enrolment.otpauth_url.starts_with(&format!(
        "otpauth://totp/Sessionary:alice?secret={}&",
        enrolment.secret_base32
    )));
    assert!(enrolment.qr_svg.contains("<svg"));
    assert_eq!(enrolment.secret_base32.len(), 32, "160-bit secret");
    assert!(!format!("{enrolment:?}").contains(&enrolment.secret_base32));

    // Pending: no code works for verification or step-up yet.
    assert!(!w.mfa.is_enrolled(&user("alice")).await?);
    let code = w.code(&enrolment, 0)?;
    assert!(matches!(
        w.mfa.verify(&user("alice"), &code).await,
        Err(Error::NotEnrolled)
    ));
    assert!(matches!(
        w.mfa.step_up(&id, &enrolment.recovery_codes[0]).await,
        Err(Error::NotEnrolled)
    ));
    assert_eq!(w.manager.verify(&alice.token.encode()).await?.aal, 1);

    // A wrong code or a recovery code does not confirm; the TOTP code does.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert!(matches!(
        w.mfa.confirm_enrolment(&id, wrong).await,
        Err(Error::InvalidCode)
    ));
    assert!(matches!(
        w.mfa
            .confirm_enrolment(&id, &enrolment.recovery_codes[0])
            .await,
        Err(Error::InvalidCode)
    ));
    assert!(!w.mfa.is_enrolled(&user("alice")).await?);
    w.mfa.confirm_enrolment(&id, &code).await?;
    assert!(w.mfa.is_enrolled(&user("alice")).await?);

    // Confirmed: a second enrolment is refused until MFA is disabled.
    assert!(matches!(
        w.mfa.begin_enrolment(&id).await,
        Err(Error::AlreadyEnrolled)
    ));
    assert!(matches!(
        w.mfa.confirm_enrolment(&id, &code).await,
        Err(Error::AlreadyEnrolled)
    ));

    // An anonymous session has no MFA.
    let anon = w.manager.create(NewSession::anonymous()).await?;
    assert!(matches!(
        w.mfa.begin_enrolment(&anon.session.id).await,
        Err(Error::NotSignedIn)
    ));
    assert!(matches!(
        w.mfa.step_up(&anon.session.id, &code).await,
        Err(Error::NotSignedIn)
    ));
    Ok(())
}

#[tokio::test]
async fn a_restarted_enrolment_replaces_the_pending_secret() -> Result<()> {
    let w = world()?;
    let alice = w.sign_in("alice").await?;
    let first = w.mfa.begin_enrolment(&alice.session.id).await?;
    let second = w.mfa.begin_enrolment(&alice.session.id).await?;
    assert_ne!(first.secret_base32, second.secret_base32);
    let stale = w.code(&first, 0)?;
    if stale != w.code(&second, 0)? {
        assert!(matches!(
            w.mfa.confirm_enrolment(&alice.session.id, &stale).await,
            Err(Error::InvalidCode)
        ));
    }
    w.mfa
        .confirm_enrolment(&alice.session.id, &w.code(&second, 0)?)
        .await?;
    Ok(())
}

#[tokio::test]
async fn window_edges_one_step_either_side_and_no_more() -> Result<()> {
    let w = world()?;
    let (_, e) = w.enrolled("alice").await?;
    let alice = user("alice");
    // Two steps ago and two steps ahead: refused (wrong codes, not replays).
    assert!(matches!(
        w.mfa.verify(&alice, &w.code(&e, -2)?).await,
        Err(Error::InvalidCode)
    ));
    assert!(matches!(
        w.mfa.verify(&alice, &w.code(&e, 2)?).await,
        Err(Error::InvalidCode)
    ));
    // Both refusals count as wrong codes.
    let (_, data) = w.manager.user_data(&alice).await?;
    assert_eq!(data[MFA_KEY]["failures"].as_array().map(Vec::len), Some(2));
    // At the last millisecond of a step, the previous step's code still passes.
    w.clock.advance(STEP - Duration::from_millis(1));
    let previous = w.code(&e, -1)?;
    assert_eq!(
        w.mfa.verify(&alice, &previous).await?,
        Verified::Totp {
            step: u64::try_from(w.clock.now().as_secs())? / 30 - 1
        }
    );
    // The current step's code, then the next step's (a clock running ahead).
    w.mfa.verify(&alice, &w.code(&e, 0)?).await?;
    w.mfa.verify(&alice, &w.code(&e, 1)?).await?;
    Ok(())
}

#[tokio::test]
async fn the_code_of_two_steps_ago_is_refused_at_the_first_millisecond_of_a_step() -> Result<()> {
    let w = world()?;
    let (_, e) = w.enrolled("alice").await?;
    let alice = user("alice");
    let old = w.code(&e, -1)?;
    w.clock.advance(STEP); // first millisecond of the next step: `old` is two steps back
    let result = w.mfa.verify(&alice, &old).await;
    if old == w.code(&e, -1)? || old == w.code(&e, 0)? || old == w.code(&e, 1)? {
        return Ok(()); // a one-in-a-million coincidence of codes
    }
    assert!(matches!(result, Err(Error::InvalidCode)), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn replayed_codes_are_refused() -> Result<()> {
    let w = world()?;
    let (_, e) = w.enrolled("alice").await?;
    let alice = user("alice");
    let now = w.code(&e, 0)?;
    w.mfa.verify(&alice, &now).await?;
    // The same code again, within its step.
    assert!(matches!(
        w.mfa.verify(&alice, &now).await,
        Err(Error::Replayed)
    ));
    // An older step after a newer one, though inside the skew window.
    let previous = w.code(&e, -1)?;
    if previous != now {
        assert!(matches!(
            w.mfa.verify(&alice, &previous).await,
            Err(Error::Replayed)
        ));
    }
    // The confirming code of the enrolment is spent too, even back in its step.
    w.clock.advance(STEP);
    let next = w.code(&e, 0)?;
    w.mfa.verify(&alice, &next).await?;
    assert!(matches!(
        w.mfa.verify(&alice, &next).await,
        Err(Error::Replayed)
    ));
    Ok(())
}

/// One thread, so the interleaving is the same every run: each task yields
/// before its read and before its write, so all twenty read before any writes.
#[tokio::test]
async fn twenty_concurrent_uses_of_one_code_succeed_once() -> Result<()> {
    one_code_twenty_times().await
}

/// Two threads: real parallelism, a different interleaving each run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_uses_of_one_code_succeed_once() -> Result<()> {
    one_code_twenty_times().await
}

async fn one_code_twenty_times() -> Result<()> {
    let mut w = yielding_world()?;
    // A rate limit that does not interfere: every loser must be a replay.
    w.mfa = w.mfa.with_rate_limit(100, Duration::from_secs(300));
    let (_, e) = w.enrolled("alice").await?;
    let code = w.code(&e, 0)?;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mfa = w.mfa.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            mfa.verify(&user("alice"), &code).await
        }));
    }
    let (mut ok, mut replayed) = (0, 0);
    for t in tasks {
        match t.await? {
            Ok(Verified::Totp { .. }) => ok += 1,
            Err(Error::Replayed) => replayed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, replayed), (1, 19));
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_step_ups_with_one_code_raise_one_session() -> Result<()> {
    let mut w = yielding_world()?;
    w.mfa = w.mfa.with_rate_limit(100, Duration::from_secs(300));
    let (_, e) = w.enrolled("alice").await?;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(w.sign_in("alice").await?);
    }
    let code = w.code(&e, 0)?;
    let mut tasks = Vec::new();
    for s in &sessions {
        let (mfa, code, id) = (w.mfa.clone(), code.clone(), s.session.id);
        tasks.push(tokio::spawn(async move { mfa.step_up(&id, &code).await }));
    }
    let mut raised = 0;
    for t in tasks {
        if t.await?.is_ok() {
            raised += 1;
        }
    }
    assert_eq!(raised, 1);
    let mut aal2 = 0;
    for s in &sessions {
        if let Ok(r) = w.manager.verify(&s.token.encode()).await {
            assert_eq!(r.aal, 1);
        } else {
            aal2 += 1; // regenerated: its old token is dead
        }
    }
    assert_eq!(aal2, 1);
    Ok(())
}

#[tokio::test]
async fn recovery_codes_are_ten_single_use_and_stored_only_hashed() -> Result<()> {
    let w = world()?;
    let (_, e) = w.enrolled("alice").await?;
    let alice = user("alice");
    assert_eq!(e.recovery_codes.len(), 10);
    let mut distinct = e.recovery_codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);

    let (_, data) = w.manager.user_data(&alice).await?;
    let stored = serde_json::to_string(&data)?;
    for code in &e.recovery_codes {
        assert!(!stored.contains(code.as_str()));
        assert!(!stored.contains(&code.replace('-', "")));
        assert!(!stored.contains(&code.to_uppercase()));
    }
    assert_eq!(data[MFA_KEY]["recovery"].as_array().map(Vec::len), Some(10));

    assert_eq!(
        w.mfa.verify(&alice, &e.recovery_codes[0]).await?,
        Verified::Recovery { remaining: 9 }
    );
    assert!(matches!(
        w.mfa.verify(&alice, &e.recovery_codes[0]).await,
        Err(Error::InvalidCode)
    ));
    // Spelling does not matter: upper case, spaces for hyphens.
    let loose = e.recovery_codes[1].to_uppercase().replace('-', " ");
    assert_eq!(
        w.mfa.verify(&alice, &loose).await?,
        Verified::Recovery { remaining: 8 }
    );
    assert_eq!(w.mfa.recovery_codes_left(&alice).await?, 8);

    // Codes are bound to their user.
    let (_, bob_codes) = w.enrolled("bob").await?;
    assert!(matches!(
        w.mfa.verify(&alice, &bob_codes.recovery_codes[0]).await,
        Err(Error::InvalidCode)
    ));
    Ok(())
}

#[tokio::test]
async fn step_up_raises_aal_to_2_and_regenerates_the_token() -> Result<()> {
    let w = world()?;
    let (alice, e) = w.enrolled("alice").await?;
    let old_token = alice.token.encode();
    let before = w.manager.verify(&old_token).await?;
    assert_eq!(before.aal, 1);

    // A wrong code: nothing about the session changes.
    let wrong = if w.code(&e, 0)? == "123456" {
        "654321"
    } else {
        "123456"
    };
    let refused = w.mfa.step_up(&alice.session.id, wrong).await;
    assert!(matches!(refused, Err(Error::InvalidCode)), "{refused:?}");
    let still = w.manager.verify(&old_token).await?;
    assert_eq!((still.aal, still.auth_time), (1, before.auth_time));

    let issued = w.mfa.step_up(&alice.session.id, &w.code(&e, 0)?).await?;
    assert_eq!(issued.session.id, alice.session.id);
    assert_eq!(issued.session.aal, 2);
    assert_eq!(issued.session.auth_time, Some(w.clock.now()));
    assert_ne!(issued.session.auth_time, before.auth_time);
    let err = w
        .manager
        .verify(&old_token)
        .await
        .expect_err("the old token is dead");
    assert_eq!(err.reason(), Some("regenerated"));
    assert_eq!(w.manager.verify(&issued.token.encode()).await?.aal, 2);

    // A recovery code steps up too, to exactly AAL 2.
    let again = w
        .mfa
        .step_up(&alice.session.id, &e.recovery_codes[3])
        .await?;
    assert_eq!(again.session.aal, 2);
    let err = w
        .mfa
        .step_up(&alice.session.id, &e.recovery_codes[3])
        .await
        .expect_err("spent");
    assert_eq!(err.reason(), Some("invalid_code"));
    assert_eq!(err.problem_type(), "mfa-code-refused");
    Ok(())
}

#[tokio::test]
async fn the_privileged_window_closes_after_five_minutes() -> Result<()> {
    let w = world()?;
    let (alice, e) = w.enrolled("alice").await?; // signed in 10 steps (5 min) ago
    let id = alice.session.id;
    // Five minutes after sign-in: outside the window.
    assert!(matches!(
        w.mfa.require_privileged(&id).await,
        Err(Error::ReauthenticationRequired)
    ));
    assert!(matches!(
        w.mfa.disable(&id).await,
        Err(Error::ReauthenticationRequired)
    ));
    assert!(w.mfa.is_enrolled(&user("alice")).await?);

    // A step-up is an authentication event: the window opens again.
    let issued = w.mfa.step_up(&id, &w.code(&e, 0)?).await?;
    let record = w.mfa.require_privileged(&id).await?;
    assert_eq!(record.aal, 2);
    let window = Duration::from_secs(300);
    assert!(privileged(&record, w.clock.now(), window));
    w.clock.advance(window - Duration::from_millis(1));
    w.mfa.require_privileged(&id).await?;
    assert!(privileged(&record, w.clock.now(), window));
    w.clock.advance(Duration::from_millis(1));
    assert!(!privileged(&record, w.clock.now(), window));
    let err = w.mfa.require_privileged(&id).await.expect_err("closed");
    assert_eq!(err.problem_type(), "reauthentication-required");
    assert_eq!(err.reason(), Some("reauthentication_required"));
    assert!(matches!(
        w.mfa.disable(&id).await,
        Err(Error::ReauthenticationRequired)
    ));
    assert!(matches!(
        w.mfa.begin_enrolment(&id).await,
        Err(Error::ReauthenticationRequired)
    ));
    // Still AAL 2: the window is about time, not level.
    assert_eq!(w.manager.verify(&issued.token.encode()).await?.aal, 2);

    // Step up again (next code), then disabling works.
    w.mfa.step_up(&id, &w.code(&e, 0)?).await?;
    w.mfa.disable(&id).await?;
    assert!(!w.mfa.is_enrolled(&user("alice")).await?);
    Ok(())
}

#[tokio::test]
async fn the_window_is_configurable_and_disabling_needs_aal_2() -> Result<()> {
    let mut w = world()?;
    w.mfa = w.mfa.with_privileged_window(Duration::from_secs(60));
    assert_eq!(w.mfa.privileged_window(), Duration::from_secs(60));
    let alice = w.sign_in("alice").await?;
    let enrolment = w.mfa.begin_enrolment(&alice.session.id).await?;
    w.mfa
        .confirm_enrolment(&alice.session.id, &w.code(&enrolment, 0)?)
        .await?;
    // Inside the window, but a password-only (AAL 1) session cannot remove MFA.
    let err = w.mfa.disable(&alice.session.id).await.expect_err("aal 1");
    assert!(matches!(
        err,
        Error::InsufficientAal {
            required: 2,
            current: 1
        }
    ));
    assert!(w.mfa.is_enrolled(&user("alice")).await?);
    w.clock.advance(Duration::from_secs(60));
    assert!(matches!(
        w.mfa.require_privileged(&alice.session.id).await,
        Err(Error::ReauthenticationRequired)
    ));
    Ok(())
}

#[tokio::test]
async fn five_wrong_codes_lock_the_user_out_for_five_minutes() -> Result<()> {
    let w = world()?;
    let (alice, e) = w.enrolled("alice").await?;
    let a = user("alice");
    let good = w.code(&e, 0)?;
    let wrong = if good == "111111" { "222222" } else { "111111" };
    for i in 0..5 {
        let err = if i == 4 {
            // A wrong recovery code counts as well.
            w.mfa
                .verify(&a, "aaaaaa-aaaaaa-aaaaaa-aaaaaa")
                .await
                .expect_err("wrong")
        } else {
            w.mfa.verify(&a, wrong).await.expect_err("wrong")
        };
        assert!(matches!(err, Error::InvalidCode), "{err:?}");
        w.clock.advance(Duration::from_secs(10));
    }
    // Even the right code is not checked now, on any session or instance.
    let other = Mfa::new(w.manager.clone(), "Sessionary");
    let err = other.verify(&a, &good).await.expect_err("locked");
    let Error::TooManyAttempts { retry_after_ms } = err else {
        panic!("{err:?}");
    };
    assert_eq!(retry_after_ms, 300_000 - 50_000);
    assert_eq!(
        err_reason(&other, &a, &good).await,
        Some("too_many_attempts")
    );
    let refused = w.mfa.step_up(&alice.session.id, &good).await;
    assert!(matches!(refused, Err(Error::TooManyAttempts { .. })));
    assert_eq!(w.manager.verify(&alice.token.encode()).await?.aal, 1);

    // When the first failure leaves the window, one more attempt is allowed.
    w.clock.advance(Duration::from_millis(250_000 - 1));
    assert!(matches!(
        w.mfa.verify(&a, &w.code(&e, 0)?).await,
        Err(Error::TooManyAttempts { retry_after_ms: 1 })
    ));
    w.clock.advance(Duration::from_millis(1));
    w.mfa.verify(&a, &w.code(&e, 0)?).await?;
    // A success clears the count.
    let (_, data) = w.manager.user_data(&a).await?;
    assert_eq!(data[MFA_KEY]["failures"].as_array().map(Vec::len), Some(0));
    Ok(())
}

async fn err_reason(mfa: &Mfa, user: &UserId, code: &str) -> Option<&'static str> {
    mfa.verify(user, code).await.err().and_then(|e| e.reason())
}
