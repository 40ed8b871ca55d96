//! The JWT failure classes of SECURITY.md, each refused for the right reason.
//! Every test asserts the specific refusal, so removing its rule makes it fail.

mod common;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use sessionary_core::Clock;
use sessionary_token::{AccessTokenError, SigningAlg, SigningKey};

use common::*;

const ALGS: [SigningAlg; 3] = [SigningAlg::EdDsa, SigningAlg::Es256, SigningAlg::Hs256];

#[tokio::test]
async fn issued_tokens_verify_for_every_algorithm() {
    for alg in ALGS {
        let f = fixture(alg);
        let s = session(&f.manager, &["user", "editor"]).await;
        let at = f.tokens.issue(&s).expect("issue");
        let c = f.tokens.verify(&at.token).expect("verify");
        assert_eq!(c.sub.as_str(), "alice");
        assert_eq!(c.sid, s.id);
        assert_eq!(c.iss, ISS);
        assert_eq!(c.aud, AUD);
        assert_eq!(c.roles, vec!["user".to_owned(), "editor".to_owned()]);
        assert_eq!(c.aal, s.aal);
        assert_eq!(c.jti, at.jti);
        assert_eq!(c.exp - c.iat, 600, "default lifetime 10 min");
        assert_eq!(c.nbf, c.iat);
        assert_eq!(at.expires_at.as_millis(), c.exp * 1000);
        // The header is what RFC 9068 asks for.
        let header = jsonwebtoken::decode_header(&at.token).expect("header");
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(f.key.kid()));
        assert_eq!(header.alg, jwt_alg(alg));
        // The forger makes the same kind of token.
        let forged = forge(&f.key, &good_header(&f.key), &good_claims(&f.clock, &s));
        assert_eq!(reason(f.tokens.verify(&forged)), "accepted");
    }
}

#[tokio::test]
async fn jti_is_random_per_token() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let a = f.tokens.issue(&s).expect("issue");
    let b = f.tokens.issue(&s).expect("issue");
    assert_ne!(a.jti, b.jti);
    assert_eq!(a.jti.len(), 22);
}

#[tokio::test]
async fn alg_none_in_any_case_is_refused() {
    for alg in ALGS {
        let f = fixture(alg);
        let s = session(&f.manager, &[]).await;
        let claims = good_claims(&f.clock, &s);
        for none in ["none", "nOnE", "None", "NONE"] {
            let header = json!({"alg": none, "typ": "at+jwt", "kid": f.key.kid()});
            let msg = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            // The unsecured form (empty signature) and one with a stray signature.
            for token in [format!("{msg}."), format!("{msg}.c2ln")] {
                assert_eq!(
                    reason(f.tokens.verify(&token)),
                    "algorithm_not_allowed",
                    "{none}"
                );
            }
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_a_public_key_is_refused() {
    // Key confusion: the attacker knows the public key (it is in the JWKS) and
    // uses its bytes as an HMAC secret, naming the asymmetric key's kid.
    for alg in [SigningAlg::EdDsa, SigningAlg::Es256] {
        let f = fixture(alg);
        let s = session(&f.manager, &[]).await;
        let jwk = f.key.public_jwk().expect("public");
        let mut candidates = vec![common::b64_decode(jwk["x"].as_str().expect("x"))];
        if alg == SigningAlg::Es256 {
            // Also the uncompressed point and the JWK text itself.
            let mut point = vec![4u8];
            point.extend(common::b64_decode(jwk["x"].as_str().expect("x")));
            point.extend(common::b64_decode(jwk["y"].as_str().expect("y")));
            candidates.push(point);
        }
        candidates.push(jwk.to_string().into_bytes());
        for secret in candidates {
            let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": f.key.kid()});
            let token = forge_with(
                &header,
                good_claims(&f.clock, &s).to_string().as_bytes(),
                &EncodingKey::from_secret(&secret),
                Algorithm::HS256,
            );
            assert_eq!(reason(f.tokens.verify(&token)), "algorithm_not_allowed");
        }
    }
}

#[tokio::test]
async fn another_algorithm_than_the_keys_is_refused() {
    // An ES256 header on an EdDSA kid, signed by an ES256 key of the attacker.
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let attacker = SigningKey::generate(SigningAlg::Es256).expect("key");
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": f.key.kid()});
    let token = forge(&attacker, &header, &good_claims(&f.clock, &s));
    assert_eq!(reason(f.tokens.verify(&token)), "algorithm_not_allowed");
}

#[tokio::test]
async fn embedded_jwk_jku_x5u_are_ignored() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let claims = good_claims(&f.clock, &s);
    let attacker = SigningKey::generate(SigningAlg::EdDsa).expect("key");
    let attacker_jwk = attacker.public_jwk().expect("jwk");
    // Signed by the attacker, whose public key rides along in `jwk`, under our kid...
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": f.key.kid(), "jwk": attacker_jwk});
    assert_eq!(
        reason(f.tokens.verify(&forge(&attacker, &header, &claims))),
        "bad_signature"
    );
    // ... under the attacker's kid ...
    let header =
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": attacker.kid(), "jwk": attacker_jwk});
    assert_eq!(
        reason(f.tokens.verify(&forge(&attacker, &header, &claims))),
        "unknown_key"
    );
    // ... or with no kid at all, and key URLs.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "jwk": attacker_jwk,
        "jku": "https://evil.example/jwks.json", "x5u": "https://evil.example/cert.pem"});
    assert_eq!(
        reason(f.tokens.verify(&forge(&attacker, &header, &claims))),
        "unknown_key"
    );
    // Our own token with those headers added still verifies: they are ignored, not fetched.
    let mut header = good_header(&f.key);
    header["jku"] = json!("https://evil.example/jwks.json");
    header["x5u"] = json!("https://evil.example/cert.pem");
    header["jwk"] = attacker_jwk;
    assert_eq!(
        reason(f.tokens.verify(&forge(&f.key, &header, &claims))),
        "accepted"
    );
}

#[tokio::test]
async fn hostile_kids_are_unknown_keys() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let claims = good_claims(&f.clock, &s);
    let long = "a".repeat(2000);
    for kid in [
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1' --",
        "x'; DROP TABLE keys; --",
        "%00",
        "",
        long.as_str(),
    ] {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        // Signed with our real key: only the kid is wrong.
        let token = forge(&f.key, &header, &claims);
        assert_eq!(reason(f.tokens.verify(&token)), "unknown_key", "{kid:.40}");
    }
    // A kid that is not a string, and none at all.
    for header in [
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": 7}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": [f.key.kid()]}),
    ] {
        let token = forge(&f.key, &header, &claims);
        assert_eq!(reason(f.tokens.verify(&token)), "malformed");
    }
    let token = forge(&f.key, &json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims);
    assert_eq!(reason(f.tokens.verify(&token)), "unknown_key");
}

#[tokio::test]
async fn claims_of_the_wrong_json_type_are_rejections() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let far = f.clock.now().as_secs() + 600;
    let past = f.clock.now().as_secs() - 60;
    let cases = [
        ("exp", json!(far.to_string())),
        ("exp", json!(null)),
        ("exp", json!(far as f64 + 0.5)),
        ("nbf", json!(past.to_string())),
        ("nbf", json!(null)),
        ("iat", json!(past.to_string())),
        ("aud", json!([AUD])),
        ("iss", json!(null)),
        ("sid", json!(12)),
        ("roles", json!("admin")),
        ("aal", json!("3")),
        ("aal", json!(300)),
        ("sub", json!(1)),
    ];
    for (claim, value) in cases {
        let mut claims = good_claims(&f.clock, &s);
        claims[claim] = value.clone();
        let token = forge(&f.key, &good_header(&f.key), &claims);
        match f.tokens.verify(&token) {
            Err(AccessTokenError::InvalidClaims(_)) => {}
            other => panic!("{claim} = {value}: {other:?}"),
        }
    }
    // Missing, each one.
    for claim in [
        "iss", "aud", "sub", "sid", "exp", "nbf", "iat", "jti", "roles", "aal",
    ] {
        let mut claims = good_claims(&f.clock, &s);
        claims.as_object_mut().expect("object").remove(claim);
        let token = forge(&f.key, &good_header(&f.key), &claims);
        assert_eq!(
            reason(f.tokens.verify(&token)),
            "invalid_claims",
            "missing {claim}"
        );
    }
    // A duplicate `exp` (the second one far in the future) is not "last wins".
    let claims = good_claims(&f.clock, &s).to_string();
    let dup = claims.replacen('{', &format!("{{\"exp\":{},", far + 1_000_000), 1);
    let token = forge_with(
        &good_header(&f.key),
        dup.as_bytes(),
        &encoding_key(&f.key),
        Algorithm::EdDSA,
    );
    assert_eq!(reason(f.tokens.verify(&token)), "invalid_claims");
}

#[tokio::test]
async fn expiry_and_not_before_with_leeway_on_both_sides() {
    for leeway_s in [30u64, 5] {
        let f = fixture_with(SigningAlg::EdDsa, |b| {
            b.with_leeway(Duration::from_secs(leeway_s))
        });
        let s = session(&f.manager, &[]).await;
        let at = f.tokens.issue(&s).expect("issue");
        let exp_ms = at.expires_at.as_millis();
        let leeway = i64::try_from(leeway_s).expect("small") * 1000;
        // Just inside the leeway after exp: accepted; at its end: refused.
        f.clock.set(sessionary_core::Timestamp(exp_ms + leeway - 1));
        assert_eq!(reason(f.tokens.verify(&at.token)), "accepted");
        f.clock.set(sessionary_core::Timestamp(exp_ms + leeway));
        assert_eq!(reason(f.tokens.verify(&at.token)), "expired");

        // nbf in the future: accepted within the leeway, refused beyond.
        f.clock.set(sessionary_core::Timestamp(exp_ms - 3_600_000));
        let s = session(&f.manager, &[]).await;
        let nbf_s = f.clock.now().as_secs() + 120;
        let mut claims = good_claims(&f.clock, &s);
        claims["nbf"] = json!(nbf_s);
        claims["iat"] = json!(f.clock.now().as_secs());
        claims["exp"] = json!(nbf_s + 600);
        let token = forge(&f.key, &good_header(&f.key), &claims);
        f.clock
            .set(sessionary_core::Timestamp(nbf_s * 1000 - leeway - 1));
        assert_eq!(reason(f.tokens.verify(&token)), "not_yet_valid");
        f.clock
            .set(sessionary_core::Timestamp(nbf_s * 1000 - leeway));
        assert_eq!(reason(f.tokens.verify(&token)), "accepted");
    }
}

#[tokio::test]
async fn issued_in_the_future_is_not_yet_valid() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let mut claims = good_claims(&f.clock, &s);
    claims["iat"] = json!(f.clock.now().as_secs() + 300);
    let token = forge(&f.key, &good_header(&f.key), &claims);
    assert_eq!(reason(f.tokens.verify(&token)), "not_yet_valid");
}

#[test]
fn leeway_over_a_minute_is_refused() {
    let key = SigningKey::generate(SigningAlg::EdDsa).expect("key");
    let r = sessionary_token::AccessTokens::builder(ISS, AUD, sessionary_token::KeyRing::new(key))
        .with_leeway(Duration::from_secs(61))
        .build();
    assert!(matches!(r, Err(AccessTokenError::Config(_))));
}

#[tokio::test]
async fn wrong_issuer_audience_and_type_are_refused() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let mut claims = good_claims(&f.clock, &s);
    claims["aud"] = json!("https://other.example");
    let token = forge(&f.key, &good_header(&f.key), &claims);
    assert_eq!(reason(f.tokens.verify(&token)), "wrong_audience");

    let mut claims = good_claims(&f.clock, &s);
    claims["iss"] = json!("https://evil.example");
    let token = forge(&f.key, &good_header(&f.key), &claims);
    assert_eq!(reason(f.tokens.verify(&token)), "wrong_issuer");

    let claims = good_claims(&f.clock, &s);
    for typ in [
        json!("JWT"),
        json!("at+jwe"),
        json!("application/jwt"),
        json!(""),
        json!(null),
    ] {
        let mut header = good_header(&f.key);
        header["typ"] = typ.clone();
        let token = forge(&f.key, &header, &claims);
        assert_eq!(reason(f.tokens.verify(&token)), "wrong_type", "typ {typ}");
    }
    let mut header = good_header(&f.key);
    header.as_object_mut().expect("object").remove("typ");
    let token = forge(&f.key, &header, &claims);
    assert_eq!(reason(f.tokens.verify(&token)), "wrong_type", "missing typ");
    // The full media type is the same type (RFC 9068 2.1).
    header["typ"] = json!("application/AT+JWT");
    let token = forge(&f.key, &header, &claims);
    assert_eq!(reason(f.tokens.verify(&token)), "accepted");
}

#[tokio::test]
async fn jwe_and_crit_are_refused() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    // A JWE compact serialization: five parts.
    let jwe_header = b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k"}"#);
    let jwe = format!("{jwe_header}.ZW5jcnlwdGVka2V5.aXY.Y2lwaGVydGV4dA.dGFn");
    match f.tokens.verify(&jwe) {
        Err(AccessTokenError::Malformed(m)) => assert!(m.contains("JWE"), "{m}"),
        other => panic!("{other:?}"),
    }
    // An `enc` header in three parts is a JWE too.
    let mut header = good_header(&f.key);
    header["enc"] = json!("A256GCM");
    let token = forge(&f.key, &header, &good_claims(&f.clock, &s));
    assert_eq!(reason(f.tokens.verify(&token)), "malformed");
    // `crit` asks for extensions we do not implement.
    let mut header = good_header(&f.key);
    header["crit"] = json!(["b64"]);
    header["b64"] = json!(false);
    let token = forge(&f.key, &header, &good_claims(&f.clock, &s));
    assert_eq!(reason(f.tokens.verify(&token)), "unsupported_header");
}

#[tokio::test]
async fn tampered_payload_or_signature_is_refused() {
    for alg in ALGS {
        let f = fixture(alg);
        let s = session(&f.manager, &["user"]).await;
        let at = f.tokens.issue(&s).expect("issue");
        let parts: Vec<&str> = at.token.split('.').collect();
        // Payload: grant ourselves admin.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&common::b64_decode(parts[1])).expect("json");
        claims["roles"] = json!(["admin"]);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(reason(f.tokens.verify(&forged)), "bad_signature", "{alg}");
        // Signature: flip one bit.
        let mut sig = common::b64_decode(parts[2]);
        sig[5] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(reason(f.tokens.verify(&forged)), "bad_signature", "{alg}");
        // Truncated and empty signatures.
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() / 2]
        );
        assert_ne!(reason(f.tokens.verify(&forged)), "accepted");
        let forged = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(reason(f.tokens.verify(&forged)), "bad_signature");
        // Header: another kid of ours would need another signature; changing typ breaks it.
        let mut header = good_header(&f.key);
        header["typ"] = json!("AT+JWT");
        let forged = format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            parts[1],
            parts[2]
        );
        assert_eq!(reason(f.tokens.verify(&forged)), "bad_signature");
        // Untouched, it verifies.
        assert_eq!(reason(f.tokens.verify(&at.token)), "accepted");
    }
}

#[tokio::test]
async fn garbage_is_a_clear_error_without_panic() {
    let f = fixture(SigningAlg::EdDsa);
    let huge = "A".repeat(1 << 20);
    let huge_dots = format!("{huge}.{huge}.{huge}");
    let cases: Vec<String> = vec![
        String::new(),
        "nodots".into(),
        "one.dot".into(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b.c.d".into(),
        "a.b.c.d.e.f".into(),
        "!!!.@@@.###".into(),
        "eyJ.eyJ.sig".into(),
        format!("{}.{}.c2ln", b64(b"not json"), b64(b"{}")),
        format!("{}.{}.c2ln", b64(b"[]"), b64(b"{}")),
        format!("{}.{}.c2ln", b64(b"{}"), b64(b"{}")),
        format!(
            "{}.{}.c2ln",
            b64("{\"alg\":\"EdDSA\"}\u{0}".as_bytes()),
            b64(b"{}")
        ),
        "\u{1F600}.\u{1F600}.\u{1F600}".into(),
        huge.clone(),
        huge_dots,
    ];
    for token in &cases {
        match f.tokens.verify(token) {
            Err(e) => {
                assert!(!e.to_string().is_empty());
                assert_eq!(
                    e.problem_type(),
                    if e.reason() == Some("malformed") {
                        "malformed-token"
                    } else {
                        "invalid-token"
                    }
                );
            }
            Ok(c) => panic!("{token:.40} accepted: {c:?}"),
        }
    }
    assert_eq!(reason(f.tokens.verify(&huge)), "malformed");
    assert_eq!(reason(f.tokens.verify("")), "malformed");
}
