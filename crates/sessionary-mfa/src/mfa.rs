//! [`Mfa`]: enrolment, verification, step-up and the privileged window.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sessionary_core::clock::duration_millis;
use sessionary_core::{
    Data, Device, Issued, Privilege, SessionId, SessionManager, SessionRecord, Timestamp, UserId,
};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::error::{Error, Result};

/// The key of the MFA state in the user's data ([`SessionManager::user_data`]).
pub const MFA_KEY: &str = "mfa";
/// Default length of the privileged window after an authentication event.
pub const DEFAULT_PRIVILEGED_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Default number of wrong codes allowed per user within [`DEFAULT_FAILURE_WINDOW`].
pub const DEFAULT_MAX_FAILURES: usize = 5;
/// Default window over which wrong codes are counted.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// The assurance level a successful step-up proves (NIST SP 800-63B-4: a
/// password plus a TOTP device is AAL2, never AAL3).
pub const STEP_UP_AAL: u8 = 2;

/// RFC 6238 parameters: the ones every authenticator app supports.
const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;
/// 160-bit secrets, as RFC 4226 section 4 recommends.
const SECRET_BYTES: usize = 20;
/// Recovery codes: 24 characters of a 32-letter alphabet (120 bits, above the
/// 112 bits under which NIST 63B-4 wants a slow hash), in four groups of six.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
const RECOVERY_LEN: usize = 24;
const RECOVERY_GROUP: usize = 6;

/// What the user's data holds under [`MFA_KEY`]. Sealed at rest by the core.
#[derive(Clone, Serialize, Deserialize)]
struct State {
    /// The TOTP secret, base32 without padding.
    secret: String,
    /// When the enrolment began.
    enrolled_at: Timestamp,
    /// Whether a code proved the user's authenticator holds the secret.
    confirmed: bool,
    /// The last TOTP time step accepted: codes for it or earlier steps are refused.
    #[serde(default)]
    last_step: Option<u64>,
    /// SHA-256 (hex) of each unused recovery code, bound to the user.
    #[serde(default)]
    recovery: Vec<String>,
    /// When each recent wrong code came (the rate limit).
    #[serde(default)]
    failures: Vec<Timestamp>,
}

/// A new enrolment, returned once by [`Mfa::begin_enrolment`]. Show it to the
/// user and drop it: only hashes of the recovery codes are kept.
pub struct Enrolment {
    /// The TOTP secret in base32 (for typing into an authenticator app).
    pub secret_base32: String,
    /// The `otpauth://totp/...` URL the QR code encodes.
    pub otpauth_url: String,
    /// The QR code of [`Self::otpauth_url`] as an SVG document.
    pub qr_svg: String,
    /// The recovery codes, each usable once; shown only now.
    pub recovery_codes: Vec<String>,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("secret_base32", &"REDACTED")
            .field("otpauth_url", &"REDACTED")
            .field("qr_svg", &"REDACTED")
            .field("recovery_codes", &self.recovery_codes.len())
            .finish()
    }
}

/// How a code was accepted by [`Mfa::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verified {
    /// A TOTP code, for this time step (now spent, with every earlier step).
    Totp {
        /// The RFC 6238 time step (Unix seconds / 30).
        step: u64,
    },
    /// A recovery code (now spent).
    Recovery {
        /// Unused recovery codes left.
        remaining: usize,
    },
}

/// Whether `record` is inside its privileged window at `now`: a signed-in
/// session whose last authentication event (`auth_time`: sign-in, or a step-up
/// or re-authentication through [`SessionManager::regenerate`]) is less than
/// `window` old. Sensitive actions (change password, disable MFA, end all
/// sessions) are allowed only then.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sessionary_mfa::privileged;
/// # fn check(record: &sessionary_core::SessionRecord, now: sessionary_core::Timestamp) {
/// if !privileged(record, now, Duration::from_secs(300)) {
///     // ask the user to authenticate again
/// }
/// # }
/// ```
pub fn privileged(record: &SessionRecord, now: Timestamp, window: Duration) -> bool {
    record.user.is_some()
        && record.auth_time.is_some_and(|at| {
            let age = now.millis_since(at);
            (0..duration_millis(window)).contains(&age)
        })
}

/// TOTP step-up for one [`SessionManager`]: enrolment with a QR code and
/// recovery codes, verification with replay refusal and a rate limit, step-up
/// to AAL2 with a new token, and the privileged window for sensitive actions.
///
/// Time is the manager's [`sessionary_core::Clock`], so codes, `auth_time`
/// and the windows all follow one clock (a `MockClock` in tests). State lives
/// in the user's data under [`MFA_KEY`] (sealed at rest by the core) and every
/// check-and-change is one compare-and-set ([`SessionManager::update_user_data`]),
/// so concurrent submissions of one code cannot both pass.
#[derive(Clone, Debug)]
pub struct Mfa {
    manager: SessionManager,
    issuer: String,
    window: Duration,
    max_failures: usize,
    failure_window: Duration,
}

/// What a check inside the compare-and-set closure does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A confirmed enrolment; TOTP or recovery code.
    Verify,
    /// An unconfirmed enrolment; TOTP only; confirms it.
    Confirm,
}

impl Mfa {
    /// MFA over `manager`; `issuer` names the service in authenticator apps.
    pub fn new(manager: SessionManager, issuer: &str) -> Self {
        Self {
            manager,
            issuer: issuer.to_owned(),
            window: DEFAULT_PRIVILEGED_WINDOW,
            max_failures: DEFAULT_MAX_FAILURES,
            failure_window: DEFAULT_FAILURE_WINDOW,
        }
    }

    /// Sets the privileged window (default [`DEFAULT_PRIVILEGED_WINDOW`]).
    #[must_use]
    pub fn with_privileged_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets the rate limit: at most `max` wrong codes per user within `window`
    /// (default 5 per 5 minutes). `max` is at least 1.
    #[must_use]
    pub fn with_rate_limit(mut self, max: usize, window: Duration) -> Self {
        self.max_failures = max.max(1);
        self.failure_window = window;
        self
    }

    /// The privileged window in force.
    pub fn privileged_window(&self) -> Duration {
        self.window
    }

    /// The session `id`, if it is signed in and inside its privileged window.
    /// Call it before every sensitive action (change password or email, end all
    /// sessions); [`Self::disable`] and [`Self::begin_enrolment`] call it themselves.
    ///
    /// # Errors
    ///
    /// [`Error::NotSignedIn`], [`Error::ReauthenticationRequired`], session errors.
    pub async fn require_privileged(&self, id: &SessionId) -> Result<Arc<SessionRecord>> {
        let record = self.manager.session(id).await?;
        if record.user.is_none() {
            return Err(Error::NotSignedIn);
        }
        if !privileged(&record, self.manager.now(), self.window) {
            tracing::info!(sid = %id, "sensitive action refused: re-authentication required");
            return Err(Error::ReauthenticationRequired);
        }
        Ok(record)
    }

    /// Starts (or restarts) the TOTP enrolment of the session's user: a new
    /// secret and [`RECOVERY_CODES`] recovery codes. Nothing changes for
    /// sign-in until [`Self::confirm_enrolment`] succeeds. Changing MFA is a
    /// sensitive action, so the session must be inside its privileged window.
    ///
    /// # Errors
    ///
    /// [`Error::NotSignedIn`], [`Error::ReauthenticationRequired`],
    /// [`Error::AlreadyEnrolled`] (disable first), [`Error::Random`],
    /// [`Error::Qr`], session errors.
    pub async fn begin_enrolment(&self, id: &SessionId) -> Result<Enrolment> {
        let record = self.require_privileged(id).await?;
        let user = record.user.clone().ok_or(Error::NotSignedIn)?;
        let rng = SystemRandom::new();
        let mut secret = [0u8; SECRET_BYTES];
        rng.fill(&mut secret).map_err(|_| Error::Random)?;
        let secret_base32 = match Secret::Raw(secret.to_vec()).to_encoded() {
            Secret::Encoded(s) => s,
            Secret::Raw(_) => return Err(Error::Random),
        };
        let recovery_codes = (0..RECOVERY_CODES)
            .map(|_| recovery_code(&rng))
            .collect::<Result<Vec<_>>>()?;
        let state = State {
            secret: secret_base32.clone(),
            enrolled_at: self.manager.now(),
            confirmed: false,
            last_step: None,
            recovery: recovery_codes
                .iter()
                .map(|c| recovery_hash(&user, c))
                .collect(),
            failures: Vec::new(),
        };
        let value = serde_json::to_value(&state).map_err(|e| Error::Corrupt(Box::new(e)))?;
        let mut outcome = Ok(());
        self.manager
            .update_user_data(&user, None, |data| {
                outcome = match load(data) {
                    Ok(Some(s)) if s.confirmed => Err(Error::AlreadyEnrolled),
                    // A corrupt or unconfirmed entry is replaced.
                    _ => {
                        data.insert(MFA_KEY.to_owned(), value.clone());
                        Ok(())
                    }
                };
            })
            .await?;
        outcome?;
        let otpauth_url = otpauth_url(&self.issuer, user.as_str(), &secret_base32);
        let qr_svg = qrcode::QrCode::new(otpauth_url.as_bytes())
            .map_err(Error::Qr)?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        tracing::info!(sid = %id, "mfa enrolment begun");
        Ok(Enrolment {
            secret_base32,
            otpauth_url,
            qr_svg,
            recovery_codes,
        })
    }

    /// Confirms the pending enrolment of the session's user with a TOTP code
    /// from the authenticator; from then on [`Self::step_up`] accepts codes.
    /// The code's time step is spent.
    ///
    /// # Errors
    ///
    /// [`Error::NotSignedIn`], [`Error::NotEnrolled`] (nothing pending),
    /// [`Error::AlreadyEnrolled`], [`Error::InvalidCode`], [`Error::Replayed`],
    /// [`Error::TooManyAttempts`], session errors.
    pub async fn confirm_enrolment(&self, id: &SessionId, code: &str) -> Result<()> {
        let record = self.manager.session(id).await?;
        let user = record.user.as_ref().ok_or(Error::NotSignedIn)?;
        self.check(user, code, Mode::Confirm).await?;
        tracing::info!(sid = %id, "mfa enrolment confirmed");
        Ok(())
    }

    /// Whether the user has a confirmed enrolment.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`], session errors.
    pub async fn is_enrolled(&self, user: &UserId) -> Result<bool> {
        let (_, data) = self.manager.user_data(user).await?;
        Ok(load(&data)?.is_some_and(|s| s.confirmed))
    }

    /// Unused recovery codes of the user (0 when not enrolled).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`], session errors.
    pub async fn recovery_codes_left(&self, user: &UserId) -> Result<usize> {
        let (_, data) = self.manager.user_data(user).await?;
        Ok(load(&data)?.map_or(0, |s| s.recovery.len()))
    }

    /// Checks a code of a user with a confirmed enrolment: six digits are a
    /// TOTP code (this step, the previous or the next, and only if later than
    /// the last step accepted), anything else a recovery code (single use).
    /// Wrong codes count towards the rate limit, which is checked first.
    /// Use it where MFA is part of sign-in (then create the session with
    /// AAL 2); for a live session use [`Self::step_up`].
    ///
    /// # Errors
    ///
    /// [`Error::NotEnrolled`], [`Error::InvalidCode`], [`Error::Replayed`],
    /// [`Error::TooManyAttempts`], [`Error::Corrupt`], session errors.
    pub async fn verify(&self, user: &UserId, code: &str) -> Result<Verified> {
        self.check(user, code, Mode::Verify).await
    }

    /// Steps the session up: checks `code` as [`Self::verify`] does, then
    /// regenerates the session with AAL 2 and a fresh `auth_time` (starting its
    /// privileged window). The old token is dead at once (reason
    /// `regenerated`); hand the new one to the client. A refused code changes
    /// nothing about the session.
    ///
    /// The session gets exactly AAL 2, even if it had more: the new
    /// `auth_time` belongs to this TOTP event, and a session never claims more
    /// than its authentication event proved.
    ///
    /// The code is spent when it is accepted, before the session is
    /// regenerated: if the session ends in between, the next code is needed.
    ///
    /// # Errors
    ///
    /// [`Error::NotSignedIn`], the errors of [`Self::verify`], session errors.
    pub async fn step_up(&self, id: &SessionId, code: &str) -> Result<Issued> {
        self.step_up_device(id, code, None).await
    }

    /// [`Self::step_up`] from a device that becomes the session's binding:
    /// what releases a session held after a binding mismatch
    /// ([`sessionary_core::Binding`]) rebinds it to the device that passed.
    ///
    /// # Errors
    ///
    /// As [`Self::step_up`].
    pub async fn step_up_from(&self, id: &SessionId, code: &str, device: Device) -> Result<Issued> {
        self.step_up_device(id, code, Some(device)).await
    }

    async fn step_up_device(
        &self,
        id: &SessionId,
        code: &str,
        device: Option<Device>,
    ) -> Result<Issued> {
        let record = self.manager.session(id).await?;
        let user = record.user.as_ref().ok_or(Error::NotSignedIn)?;
        match self.check(user, code, Mode::Verify).await {
            Ok(how) => {
                let issued = self
                    .manager
                    .regenerate(
                        id,
                        Privilege {
                            roles: None,
                            aal: Some(STEP_UP_AAL),
                            reauthenticated: true,
                            device,
                        },
                    )
                    .await?;
                let method = match how {
                    Verified::Totp { .. } => "totp",
                    Verified::Recovery { .. } => "recovery_code",
                };
                tracing::info!(sid = %id, method, aal = STEP_UP_AAL, "step-up");
                Ok(issued)
            }
            Err(e) => {
                tracing::warn!(sid = %id, reason = e.reason().unwrap_or("error"), "step-up refused");
                Err(e)
            }
        }
    }

    /// Removes the user's MFA (enrolment, secret, recovery codes). A sensitive
    /// action: the session must be inside its privileged window and, when a
    /// confirmed enrolment exists, at AAL 2 or more (a password alone does not
    /// remove the second factor).
    ///
    /// # Errors
    ///
    /// [`Error::NotSignedIn`], [`Error::ReauthenticationRequired`],
    /// [`Error::InsufficientAal`], [`Error::NotEnrolled`], session errors.
    pub async fn disable(&self, id: &SessionId) -> Result<()> {
        let record = self.require_privileged(id).await?;
        let user = record.user.as_ref().ok_or(Error::NotSignedIn)?;
        let mut outcome = Ok(());
        self.manager
            .update_user_data(user, None, |data| {
                outcome = match load(data) {
                    Ok(None) => Err(Error::NotEnrolled),
                    Ok(Some(s)) if s.confirmed && record.aal < STEP_UP_AAL => {
                        Err(Error::InsufficientAal {
                            required: STEP_UP_AAL,
                            current: record.aal,
                        })
                    }
                    _ => {
                        data.remove(MFA_KEY);
                        Ok(())
                    }
                };
            })
            .await?;
        outcome?;
        tracing::info!(sid = %id, "mfa disabled");
        Ok(())
    }

    /// One check-and-set of the user's MFA state: the rate limit, the code,
    /// and the spent step or recovery code, all inside one compare-and-set, so
    /// of concurrent submissions of one code exactly one passes.
    async fn check(&self, user: &UserId, code: &str, mode: Mode) -> Result<Verified> {
        let now = self.manager.now();
        let limits = (self.max_failures, duration_millis(self.failure_window));
        let mut outcome = Err(Error::NotEnrolled);
        self.manager
            .update_user_data(user, None, |data| {
                outcome = apply(data, user, code, mode, now, limits);
            })
            .await?;
        outcome
    }
}

/// The MFA state in `data`, if any.
fn load(data: &Data) -> Result<Option<State>> {
    data.get(MFA_KEY)
        .map(|v| serde_json::from_value::<State>(v.clone()))
        .transpose()
        .map_err(|e| Error::Corrupt(Box::new(e)))
}

/// Runs inside the compare-and-set closure: decides, and writes the decision
/// (spent step or code, counted failure) into `data`. A refusal by the rate
/// limit writes nothing.
fn apply(
    data: &mut Data,
    user: &UserId,
    code: &str,
    mode: Mode,
    now: Timestamp,
    (max_failures, window_ms): (usize, i64),
) -> Result<Verified> {
    let Some(mut state) = load(data)? else {
        return Err(Error::NotEnrolled);
    };
    match (mode, state.confirmed) {
        (Mode::Verify, false) => return Err(Error::NotEnrolled),
        (Mode::Confirm, true) => return Err(Error::AlreadyEnrolled),
        _ => {}
    }
    state
        .failures
        .retain(|t| (0..window_ms).contains(&now.millis_since(*t)));
    if state.failures.len() >= max_failures {
        let oldest = state.failures.iter().min().copied().unwrap_or(now);
        return Err(Error::TooManyAttempts {
            retry_after_ms: oldest.add_millis(window_ms).millis_since(now).max(1),
        });
    }
    let code = code.trim();
    let result = if code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        check_totp(&mut state, code, now)
    } else if mode == Mode::Verify {
        check_recovery(&mut state, user, code)
    } else {
        Err(Error::InvalidCode)
    };
    match &result {
        Ok(_) => {
            state.failures.clear();
            if mode == Mode::Confirm {
                state.confirmed = true;
            }
        }
        Err(_) => state.failures.push(now),
    }
    let value = serde_json::to_value(&state).map_err(|e| Error::Corrupt(Box::new(e)))?;
    data.insert(MFA_KEY.to_owned(), value);
    result
}

/// A six-digit code against the steps now-1, now and now+1, newest first;
/// only a step later than the last one accepted passes, and becomes the last.
fn check_totp(state: &mut State, code: &str, now: Timestamp) -> Result<Verified> {
    let Ok(secs) = u64::try_from(now.as_secs()) else {
        return Err(Error::InvalidCode);
    };
    let totp = generator(&state.secret)?;
    let current = secs / STEP_SECS;
    let mut fresh = None;
    let mut spent = false;
    for step in [current + 1, current, current.saturating_sub(1)] {
        let expected = totp.generate(step * STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            if state.last_step.is_some_and(|last| step <= last) {
                spent = true;
            } else if fresh.is_none() {
                fresh = Some(step);
            }
        }
    }
    match fresh {
        Some(step) => {
            state.last_step = Some(step);
            Ok(Verified::Totp { step })
        }
        None if spent => Err(Error::Replayed),
        None => Err(Error::InvalidCode),
    }
}

/// The RFC 6238 generator of a base32 secret.
fn generator(secret_base32: &str) -> Result<TOTP> {
    let bytes = Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .map_err(|e| Error::Corrupt(Box::new(e)))?;
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECS, bytes).map_err(|e| Error::Corrupt(Box::new(e)))
}

/// See [`crate::testing::code_at`].
pub(crate) fn code_at(secret_base32: &str, at: Timestamp) -> Result<String> {
    let secs = u64::try_from(at.as_secs()).map_err(|_| Error::InvalidCode)?;
    Ok(generator(secret_base32)?.generate(secs))
}

/// A recovery code: normalised, hashed with the user, compared with every
/// unused hash; a match is removed.
fn check_recovery(state: &mut State, user: &UserId, code: &str) -> Result<Verified> {
    let Some(normal) = normalise_recovery(code) else {
        return Err(Error::InvalidCode);
    };
    let hash = recovery_hash(user, &normal);
    let mut found = None;
    for (i, h) in state.recovery.iter().enumerate() {
        if bool::from(h.as_bytes().ct_eq(hash.as_bytes())) {
            found = Some(i);
        }
    }
    match found {
        Some(i) => {
            state.recovery.swap_remove(i);
            Ok(Verified::Recovery {
                remaining: state.recovery.len(),
            })
        }
        None => Err(Error::InvalidCode),
    }
}

/// Lower case, without spaces and hyphens; `None` unless 24 letters of the alphabet.
fn normalise_recovery(code: &str) -> Option<String> {
    // Anything much longer than a formatted code is refused before copying it.
    if code.len() > 4 * RECOVERY_LEN {
        return None;
    }
    let s: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == RECOVERY_LEN && s.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(s)
}

/// A new recovery code, `xxxxxx-xxxxxx-xxxxxx-xxxxxx`.
fn recovery_code(rng: &SystemRandom) -> Result<String> {
    let mut raw = [0u8; RECOVERY_LEN];
    rng.fill(&mut raw).map_err(|_| Error::Random)?;
    let mut out = String::with_capacity(RECOVERY_LEN + 3);
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % RECOVERY_GROUP == 0 {
            out.push('-');
        }
        // 256 is a multiple of 32: every letter is equally likely.
        out.push(char::from(RECOVERY_ALPHABET[usize::from(b & 31)]));
    }
    Ok(out)
}

/// SHA-256 (hex) of a recovery code, domain-separated and bound to the user,
/// so equal codes of two users hash differently.
fn recovery_hash(user: &UserId, code: &str) -> String {
    let normal = normalise_recovery(code).unwrap_or_else(|| code.to_owned());
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"sessionary-mfa recovery v1\0");
    ctx.update(user.as_str().as_bytes());
    ctx.update(b"\0");
    ctx.update(normal.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `otpauth://totp/Issuer:account?secret=...&issuer=...` (Key Uri Format),
/// parameters spelled out for apps that do not assume the defaults.
fn otpauth_url(issuer: &str, account: &str, secret_base32: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret_base32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        percent_encode(account)
    )
}

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_120_bits_and_normalise() {
        let rng = SystemRandom::new();
        let code = recovery_code(&rng).expect("random");
        assert_eq!(code.len(), 27);
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(
            normalise_recovery(&code.to_uppercase().replace('-', " ")),
            Some(code.replace('-', ""))
        );
        assert_eq!(normalise_recovery("too-short"), None);
        assert_eq!(normalise_recovery(&"a".repeat(1 << 20)), None, "huge input");
        let user = UserId::new("u").expect("id");
        let other = UserId::new("v").expect("id");
        assert_ne!(recovery_hash(&user, &code), recovery_hash(&other, &code));
    }

    #[test]
    fn otpauth_url_encodes_issuer_and_account() {
        let url = otpauth_url("Sessionary Shop", "a:b@c", "ABC");
        assert_eq!(
            url,
            "otpauth://totp/Sessionary%20Shop:a%3Ab%40c?secret=ABC&issuer=Sessionary%20Shop&algorithm=SHA1&digits=6&period=30"
        );
    }
}
