//! Access-token verification through `sessionary-token` next to the raw
//! primitive, `jsonwebtoken::decode` of the same token with a `Validation` for
//! the same algorithm, audience and issuer, for HS256, EdDSA and ES256 in one run.
//!
//! Run with `cargo bench -p sessionary-token --bench verify`; results are in the
//! crate README.
//!
//! Both sides decode into a struct of the same ten claims. `sessionary-token`
//! also checks `typ`, `nbf`, `iat`, the `sub` and `jti` rules and the revocation
//! list (here holding 10,000 ended sessions); jsonwebtoken checks `exp` and
//! `nbf` by the system clock, so the mock clock is set to the system time.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sessionary_core::{
    Clock, MemoryStore, MockClock, NewSession, SessionId, SessionManager, SystemClock, UserId,
};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";

/// The claims as the raw side reads them.
#[derive(Deserialize)]
#[allow(dead_code)] // Read by serde; the fields are the work being measured.
struct RawClaims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    roles: Vec<String>,
    aal: u8,
}

struct Case {
    name: &'static str,
    tokens: AccessTokens,
    token: String,
    key: DecodingKey,
    validation: Validation,
}

fn case(rt: &tokio::runtime::Runtime, alg: SigningAlg) -> anyhow::Result<Case> {
    let clock = MockClock::new(SystemClock.now().as_millis());
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let revocations = Revocations::new(Arc::clone(&clock));
    for _ in 0..10_000 {
        revocations.revoke(SessionId::generate()?);
    }
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_clock(Arc::clone(&clock))
        .with_event_sink(revocations.clone())
        .build()?;
    let signing = SigningKey::generate(alg)?;
    let tokens = AccessTokens::builder(ISS, AUD, KeyRing::new(signing.clone()))
        .with_clock(clock)
        .with_revocations(revocations)
        .build()?;
    let session = rt.block_on(
        manager.create(NewSession::user(UserId::new("alice@example.com")?).with_roles(["user"])),
    )?;
    let token = tokens.issue(&session.session)?.token;
    let jwk = signing.public_jwk();
    let (name, key, jwt_alg) = match alg {
        SigningAlg::EdDsa => {
            let x = jwk.as_ref().and_then(|j| j["x"].as_str()).unwrap_or("");
            (
                "EdDSA",
                DecodingKey::from_ed_components(x)?,
                Algorithm::EdDSA,
            )
        }
        SigningAlg::Es256 => {
            let j = jwk.as_ref();
            let x = j.and_then(|j| j["x"].as_str()).unwrap_or("");
            let y = j.and_then(|j| j["y"].as_str()).unwrap_or("");
            (
                "ES256",
                DecodingKey::from_ec_components(x, y)?,
                Algorithm::ES256,
            )
        }
        _ => (
            "HS256",
            DecodingKey::from_secret(signing.secret_bytes()),
            Algorithm::HS256,
        ),
    };
    let mut validation = Validation::new(jwt_alg);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[ISS]);
    validation.validate_nbf = true;
    // Both sides must accept the token before anything is measured.
    tokens.verify(&token)?;
    jsonwebtoken::decode::<RawClaims>(&token, &key, &validation)?;
    Ok(Case {
        name,
        tokens,
        token,
        key,
        validation,
    })
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let cases = [
        case(&rt, SigningAlg::Hs256)?,
        case(&rt, SigningAlg::EdDsa)?,
        case(&rt, SigningAlg::Es256)?,
    ];
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for case in &cases {
        let mut g = c.benchmark_group(format!("verify/{}", case.name));
        g.bench_function("sessionary-token", |b| {
            b.iter(|| case.tokens.verify(black_box(&case.token)));
        });
        g.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<RawClaims>(
                    black_box(&case.token),
                    &case.key,
                    &case.validation,
                )
            });
        });
        g.finish();
    }
    c.final_summary();
    // The machine is shared, so the two sides may see different load during
    // criterion's back-to-back groups. Interleaving them round by round gives a
    // ratio that load moves much less.
    println!("\npaired (interleaved rounds, medians):");
    println!("| alg | sessionary-token ns/op | jsonwebtoken ns/op | ratio |");
    println!("|---|---:|---:|---:|");
    for case in &cases {
        paired(case);
    }
    Ok(())
}

/// 41 rounds of timing each side for ~20 ms, alternating which goes first.
fn paired(case: &Case) {
    let ours = || {
        let _ = black_box(case.tokens.verify(black_box(&case.token)));
    };
    let raw = || {
        let _ = black_box(jsonwebtoken::decode::<RawClaims>(
            black_box(&case.token),
            &case.key,
            &case.validation,
        ));
    };
    let time = |f: &dyn Fn(), n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    };
    // Calibrate: iterations for ~20 ms.
    let per = time(&raw, 50).max(1.0);
    let n = ((20e6 / per) as u32).clamp(10, 1_000_000);
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..41 {
        let (x, y) = if round % 2 == 0 {
            let x = time(&ours, n);
            (x, time(&raw, n))
        } else {
            let y = time(&raw, n);
            (time(&ours, n), y)
        };
        a.push(x);
        b.push(y);
        r.push(x / y);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "| {} | {:.0} | {:.0} | {:.2} |",
        case.name,
        median(&mut a),
        median(&mut b),
        median(&mut r)
    );
}
