//! Access tokens verify with a standard JWT library through the published JWKS, and forged or
//! altered tokens are refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{problem, spawn_app, PASSWORD};

#[actix_web::test]
async fn an_access_token_verifies_through_the_published_jwks() {
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

#[actix_web::test]
async fn altered_or_forged_tokens_are_refused() {
    let app = spawn_app().await;
    app.verified_user("omar@example.com", None).await;
    let pair = app.login_ok("omar@example.com", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["roles"] = serde_json::json!(["admin"]);

    let mut none_header = header.clone();
    none_header["alg"] = "none".into();
    let mut jwt_typ = header.clone();
    jwt_typ["typ"] = "JWT".into();
    let forged = [
        format!("{}.{}.{}", parts[0], b64(&claims), parts[2]),
        format!("{}.{}.", b64(&none_header), b64(&claims)),
        format!("{}.{}.{}", b64(&jwt_typ), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 2]
        ),
        "not.a.jwt".to_owned(),
    ];
    for f in forged {
        for path in ["/v1/users/me", "/v1/auth/verify"] {
            let r = app.get_bearer(path, &f).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} with {f}");
        }
    }
    // An expired token is refused too (past the 5 s skew leeway).
    app.advance(900 + 6);
    let (status, _) = problem(app.get_bearer("/v1/users/me", token).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
