//! Access tokens (RFC 8725, ASVS V9): they verify with a standard JWT library through the
//! published JWKS, and every forgery is refused on every endpoint that takes a bearer token and
//! on forward-auth. Forgeries that need a valid signature are signed with the node's own key,
//! so each claim check is shown to hold on its own; a control token signed the same way is
//! accepted, so the forging itself is sound.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_app, TestApp, PASSWORD};

#[actix_web::test]
async fn asvs_v9_1_1_an_access_token_verifies_through_the_published_jwks() {
    let app = spawn_app().await;
    app.verified_user("nia@example.com", Some("nia")).await;
    let pair = app.login_ok("nia@example.com", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();

    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let jwks: JwkSet = r.json().await.unwrap();
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the token's kid is published");

    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[app.base.as_str()]);
    v.set_audience(&["keyward"]);
    let data = decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).expect("verifies");
    let c = data.claims;
    let me: Value = app
        .get_bearer("/v1/users/me", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["sub"], me["id"]);
    assert_eq!(c["sid"], pair["session_id"]);
    assert_eq!(c["email"], "nia@example.com");
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["roles"], serde_json::json!([]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    for k in ["nbf", "jti"] {
        assert!(c.get(k).is_some(), "{k}");
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// A compact JWS of `header` and `claims` with the signature `sign` makes over both.
fn jws(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = URL_SAFE_NO_PAD.encode(sign(input.as_bytes()));
    format!("{input}.{sig}")
}

/// A logged-in user, the genuine token's header and claims, the node's signing key (read with
/// the master key, as an insider would) and a foreign key.
struct Forger {
    genuine: String,
    refresh: String,
    session_id: String,
    user_id: String,
    header: Value,
    claims: Value,
    ours: SigningKey,
    foreign: SigningKey,
}

impl Forger {
    async fn new(app: &TestApp) -> Forger {
        app.verified_user("forge@example.com", None).await;
        let pair = app.login_ok("forge@example.com", PASSWORD).await;
        let genuine = pair["access_token"].as_str().unwrap().to_owned();
        let master = keyward_actors::keys::master_key(&app.settings).unwrap();
        let (kid, der) =
            keyward_actors::keys::active_private_key(&app.node.contexts.store, &master)
                .await
                .unwrap();
        let header = part(&genuine, 0);
        assert_eq!(header["kid"], kid.as_str());
        let claims = part(&genuine, 1);
        Forger {
            refresh: pair["refresh_token"].as_str().unwrap().to_owned(),
            session_id: pair["session_id"].as_str().unwrap().to_owned(),
            user_id: claims["sub"].as_str().unwrap().to_owned(),
            genuine,
            header,
            claims,
            ours: SigningKey::from_pkcs8_der(&der).unwrap(),
            foreign: SigningKey::from_bytes(&[7; 32]),
        }
    }

    fn ours(&self, header: &Value, claims: &Value) -> String {
        jws(header, claims, |m| self.ours.sign(m).to_bytes().to_vec())
    }

    fn foreign(&self, header: &Value, claims: &Value) -> String {
        jws(header, claims, |m| self.foreign.sign(m).to_bytes().to_vec())
    }

    fn hs256(&self, header: &Value, claims: &Value, secret: &[u8]) -> String {
        jws(header, claims, |m| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        })
    }

    fn header_with(&self, k: &str, v: Value) -> Value {
        let mut h = self.header.clone();
        h[k] = v;
        h
    }

    fn header_without(&self, k: &str) -> Value {
        let mut h = self.header.clone();
        h.as_object_mut().unwrap().remove(k);
        h
    }

    fn claims_with(&self, k: &str, v: Value) -> Value {
        let mut c = self.claims.clone();
        c[k] = v;
        c
    }

    fn claims_without(&self, k: &str) -> Value {
        let mut c = self.claims.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    }

    /// The control: our own key over the genuine header and claims is accepted.
    async fn assert_control_accepted(&self, app: &TestApp) {
        let control = self.ours(&self.header, &self.claims);
        for path in ["/v1/users/me", "/v1/auth/verify"] {
            let r = app.get_bearer(path, &control).await;
            assert_eq!(r.status(), StatusCode::OK, "control token at {path}");
        }
    }

    /// Every endpoint that takes a bearer answers 401 with an invalid_token challenge, and
    /// none of them acted: the genuine token, the session and the password still work.
    async fn assert_refused_everywhere(&self, app: &TestApp, cases: &[(&str, String)]) {
        let endpoints: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/v1/users/me".into(), None),
            (Method::GET, "/v1/auth/verify".into(), None),
            (Method::GET, "/v1/sessions".into(), None),
            (
                Method::DELETE,
                format!("/v1/sessions/{}", self.session_id),
                None,
            ),
            (Method::DELETE, "/v1/sessions".into(), None),
            (Method::POST, "/v1/auth/logout".into(), None),
            (
                Method::POST,
                "/v1/auth/password/change".into(),
                Some(
                    json!({"current_password": PASSWORD, "new_password": "a different long passphrase 42"}),
                ),
            ),
            (
                Method::POST,
                format!("/v1/admin/users/{}/block", self.user_id),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/v1/admin/users/{}/unblock", self.user_id),
                None,
            ),
        ];
        for (name, token) in cases {
            for (method, path, body) in &endpoints {
                let mut req = app
                    .client
                    .request(method.clone(), app.url(path))
                    .bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let r = req.send().await.unwrap();
                assert_eq!(
                    r.status(),
                    StatusCode::UNAUTHORIZED,
                    "{name}: {method} {path}"
                );
                let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
                assert!(
                    challenge.contains("invalid_token"),
                    "{name}: {method} {path}: {challenge}"
                );
            }
        }
        let r = app.get_bearer("/v1/users/me", &self.genuine).await;
        assert_eq!(r.status(), StatusCode::OK, "the genuine token still works");
        app.login_ok("forge@example.com", PASSWORD).await;
    }
}

#[actix_web::test]
async fn asvs_v9_1_1_a_tampered_payload_or_signature_is_refused() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let parts: Vec<&str> = f.genuine.split('.').collect();
    let admin = f.claims_with("roles", json!(["admin"]));
    let mut sig = parts[2].chars().collect::<Vec<_>>();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    let sig: String = sig.into_iter().collect();
    f.assert_refused_everywhere(
        &app,
        &[
            (
                "payload altered, signature kept",
                format!("{}.{}.{}", parts[0], b64(&admin), parts[2]),
            ),
            (
                "signature altered",
                format!("{}.{}.{sig}", parts[0], parts[1]),
            ),
            ("signature removed", format!("{}.{}.", parts[0], parts[1])),
            ("not a JWT", "not.a.jwt".into()),
            ("two parts", format!("{}.{}", parts[0], parts[1])),
        ],
    )
    .await;
}

#[actix_web::test]
async fn asvs_v9_1_2_only_eddsa_is_accepted_so_none_and_hs256_with_the_public_key_fail() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let admin = f.claims_with("roles", json!(["admin"]));
    let public = f.ours.verifying_key().to_bytes();
    let x = URL_SAFE_NO_PAD.encode(public);
    // The public key as SubjectPublicKeyInfo PEM, as a confused verifier would load it.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&public);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let hs = f.header_with("alg", "HS256".into());
    let mut cases = vec![
        (
            "HS256 keyed with the raw public key",
            f.hs256(&hs, &admin, &public),
        ),
        (
            "HS256 keyed with the JWK x",
            f.hs256(&hs, &admin, x.as_bytes()),
        ),
        (
            "HS256 keyed with the public PEM",
            f.hs256(&hs, &admin, pem.as_bytes()),
        ),
        (
            "RS256 header over an EdDSA signature",
            f.ours(&f.header_with("alg", "RS256".into()), &admin),
        ),
        (
            "ES256 header over an EdDSA signature",
            f.ours(&f.header_with("alg", "ES256".into()), &admin),
        ),
    ];
    for none in ["none", "None", "NONE", "nOnE"] {
        let h = f.header_with("alg", none.into());
        cases.push((
            "alg none, empty signature",
            format!("{}.{}.", b64(&h), b64(&admin)),
        ));
        cases.push(("alg none, our signature kept", f.ours(&h, &admin)));
    }
    f.assert_refused_everywhere(&app, &cases).await;
}

#[actix_web::test]
async fn asvs_v9_1_3_keys_come_only_from_the_node_so_foreign_keys_kids_and_key_urls_fail() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let admin = f.claims_with("roles", json!(["admin"]));
    let foreign_jwk = json!({
        "kty": "OKP", "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(f.foreign.verifying_key().to_bytes()),
    });
    let cases = vec![
        ("a foreign key under our kid", f.foreign(&f.header, &admin)),
        (
            "a foreign key under an unknown kid",
            f.foreign(&f.header_with("kid", "attacker-key".into()), &admin),
        ),
        (
            "our key under an unknown kid",
            f.ours(&f.header_with("kid", "attacker-key".into()), &f.claims),
        ),
        ("no kid", f.ours(&f.header_without("kid"), &f.claims)),
        (
            "an embedded jwk, signed by it",
            f.foreign(&f.header_with("jwk", foreign_jwk.clone()), &admin),
        ),
        (
            "an embedded jwk, signed by our key",
            f.ours(&f.header_with("jwk", foreign_jwk), &f.claims),
        ),
        (
            "a jku header",
            f.ours(
                &f.header_with("jku", "https://attacker.example/jwks.json".into()),
                &f.claims,
            ),
        ),
        (
            "an x5u header",
            f.ours(
                &f.header_with("x5u", "https://attacker.example/cert.pem".into()),
                &f.claims,
            ),
        ),
        (
            "an x5c header",
            f.ours(&f.header_with("x5c", json!(["MIIBfake"])), &f.claims),
        ),
        (
            "a crit header",
            f.ours(&f.header_with("crit", json!(["exp"])), &f.claims),
        ),
    ];
    f.assert_refused_everywhere(&app, &cases).await;
}

#[actix_web::test]
async fn asvs_v9_2_1_tokens_outside_their_nbf_to_exp_span_are_refused() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let now = chrono::Utc::now().timestamp();
    let cases = vec![
        (
            "expired a minute ago",
            f.ours(&f.header, &f.claims_with("exp", (now - 60).into())),
        ),
        (
            "not valid for an hour",
            f.ours(&f.header, &f.claims_with("nbf", (now + 3600).into())),
        ),
        ("no exp", f.ours(&f.header, &f.claims_without("exp"))),
        ("no nbf", f.ours(&f.header, &f.claims_without("nbf"))),
        (
            "exp as a string",
            f.ours(&f.header, &f.claims_with("exp", "9999999999".into())),
        ),
    ];
    f.assert_refused_everywhere(&app, &cases).await;
    // And the genuine token itself once its 15 minutes (plus 5 s of skew) are over.
    app.advance(900 + 6);
    let r = app.get_bearer("/v1/users/me", &f.genuine).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn asvs_v9_2_2_only_access_tokens_are_accepted_as_bearers() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let cases = vec![
        ("no typ", f.ours(&f.header_without("typ"), &f.claims)),
        (
            "typ JWT",
            f.ours(&f.header_with("typ", "JWT".into()), &f.claims),
        ),
        (
            "typ of an ID token",
            f.ours(&f.header_with("typ", "id+jwt".into()), &f.claims),
        ),
        ("the refresh token as a bearer", f.refresh.clone()),
        (
            "another user's id in our session",
            f.ours(
                &f.header,
                &f.claims_with("sub", uuid::Uuid::new_v4().to_string().into()),
            ),
        ),
        (
            "a session id that does not exist",
            f.ours(
                &f.header,
                &f.claims_with("sid", uuid::Uuid::new_v4().to_string().into()),
            ),
        ),
    ];
    f.assert_refused_everywhere(&app, &cases).await;
}

#[actix_web::test]
async fn asvs_v9_2_3_tokens_for_another_audience_or_issuer_are_refused() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let cases = vec![
        (
            "audience of another service",
            f.ours(&f.header, &f.claims_with("aud", "billing".into())),
        ),
        ("no audience", f.ours(&f.header, &f.claims_without("aud"))),
        (
            "an audience list with another service",
            f.ours(
                &f.header,
                &f.claims_with("aud", json!(["billing", "other"])),
            ),
        ),
        (
            "another issuer",
            f.ours(
                &f.header,
                &f.claims_with("iss", "https://attacker.example".into()),
            ),
        ),
    ];
    f.assert_refused_everywhere(&app, &cases).await;
}

#[actix_web::test]
async fn asvs_v15_2_2_oversized_tokens_are_refused_unparsed() {
    let app = spawn_app().await;
    let f = Forger::new(&app).await;
    f.assert_control_accepted(&app).await;
    let padded = f.claims_with("pad", "x".repeat(9000).into());
    let cases = vec![
        ("a signed 9 KiB token", f.ours(&f.header, &padded)),
        ("16 KiB of junk", "a".repeat(16 * 1024)),
    ];
    f.assert_refused_everywhere(&app, &cases).await;
}
