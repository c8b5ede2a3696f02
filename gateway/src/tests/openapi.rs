//! The OpenAPI description: committed copy current, every route of the API table described.

use crate::routes::openapi::spec_json;

#[test]
fn the_committed_spec_is_the_generated_one() {
    // Compared as JSON values: a test build may have serde_json's `preserve_order` on (a
    // dev-dependency enables it), which orders keys differently from `keyward openapi`.
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap();
    let generated: serde_json::Value = serde_json::from_str(&spec_json().unwrap()).unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json`"
    );
}

#[test]
fn every_route_of_the_api_is_described_with_its_problems() {
    let spec: serde_json::Value = serde_json::from_str(&spec_json().unwrap()).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let routes = [
        ("post", "/v1/auth/register"),
        ("get", "/v1/auth/verify-email"),
        ("post", "/v1/auth/verify-email"),
        ("post", "/v1/auth/verify-email/resend"),
        ("post", "/v1/auth/login"),
        ("post", "/v1/auth/refresh"),
        ("post", "/v1/auth/logout"),
        ("post", "/v1/auth/password/forgot"),
        ("post", "/v1/auth/password/reset"),
        ("post", "/v1/auth/password/change"),
        ("get", "/v1/sessions"),
        ("delete", "/v1/sessions"),
        ("delete", "/v1/sessions/{id}"),
        ("get", "/v1/users/me"),
        ("patch", "/v1/users/me"),
        ("delete", "/v1/users/me"),
        ("get", "/v1/users/search"),
        ("get", "/v1/users/{id}"),
        ("put", "/v1/users/{id}"),
        ("put", "/v1/users/me/avatar"),
        ("delete", "/v1/users/me/avatar"),
        ("get", "/v1/avatars/{key}"),
        ("post", "/v1/users/me/phone"),
        ("post", "/v1/users/me/phone/confirm"),
        ("get", "/v1/users/me/mfa"),
        ("post", "/v1/users/me/mfa/totp"),
        ("post", "/v1/users/me/mfa/totp/confirm"),
        ("post", "/v1/users/me/mfa/recovery-codes"),
        ("delete", "/v1/users/me/mfa/{factor_id}"),
        ("post", "/v1/auth/mfa/verify"),
        ("post", "/v1/auth/step-up"),
        ("delete", "/v1/admin/users/{id}/mfa"),
        ("post", "/v1/users/me/mfa/sms"),
        ("post", "/v1/users/me/mfa/email"),
        ("post", "/v1/auth/mfa/challenge"),
        ("post", "/v1/users/me/passkeys/options"),
        ("post", "/v1/users/me/passkeys"),
        ("post", "/v1/auth/passkey/options"),
        ("post", "/v1/auth/passkey"),
        ("get", "/v1/auth/oauth/{provider}/start"),
        ("get", "/v1/auth/oauth/{provider}/callback"),
        ("post", "/v1/auth/oauth/exchange"),
        ("post", "/v1/auth/oauth"),
        ("get", "/v1/users/me/identities"),
        ("delete", "/v1/users/me/identities/{id}"),
        ("post", "/v1/users/me/identities/{provider}/start"),
        ("post", "/v1/auth/oauth/link/code"),
        ("post", "/v1/auth/oauth/link"),
        ("get", "/v1/users/me/settings"),
        ("patch", "/v1/users/me/settings"),
        ("get", "/v1/users/me/activity"),
        ("get", "/v1/users/me/export"),
        ("get", "/v1/auth/verify"),
        ("get", "/.well-known/jwks.json"),
        ("post", "/v1/admin/users/{id}/block"),
        ("post", "/v1/admin/users/{id}/unblock"),
        ("post", "/v1/access/check"),
        ("get", "/v1/users/me/permissions"),
        ("get", "/v1/admin/roles"),
        ("post", "/v1/admin/roles"),
        ("get", "/v1/admin/roles/{name}"),
        ("put", "/v1/admin/roles/{name}"),
        ("delete", "/v1/admin/roles/{name}"),
        ("put", "/v1/admin/users/{id}/roles/{role}"),
        ("delete", "/v1/admin/users/{id}/roles/{role}"),
        ("post", "/v1/oauth/token"),
        ("get", "/v1/admin/users"),
        ("post", "/v1/admin/users"),
        ("get", "/v1/admin/users/{id}"),
        ("delete", "/v1/admin/users/{id}"),
        ("post", "/v1/admin/users/{id}/logout"),
        ("get", "/v1/admin/audit"),
        ("get", "/v1/admin/clients"),
        ("post", "/v1/admin/clients"),
        ("delete", "/v1/admin/clients/{id}"),
        ("post", "/v1/admin/clients/{id}/secret"),
        ("post", "/v1/notifications"),
        ("delete", "/v1/notifications/scheduled/{id}"),
        ("get", "/v1/users/me/notifications"),
        ("get", "/v1/users/me/notifications/stream"),
        ("post", "/v1/users/me/notifications/{id}/read"),
        ("post", "/v1/users/me/notifications/read-all"),
        ("get", "/v1/users/me/notification-preferences"),
        ("put", "/v1/users/me/notification-preferences"),
        ("get", "/v1/admin/templates/{key}/{channel}/{locale}"),
        ("put", "/v1/admin/templates/{key}/{channel}/{locale}"),
        (
            "post",
            "/v1/admin/templates/{key}/{channel}/{locale}/preview",
        ),
        ("get", "/v1/admin/notifications"),
        ("post", "/v1/users/me/push-subscriptions"),
        ("delete", "/v1/users/me/push-subscriptions/{id}"),
        ("get", "/v1/notifications/vapid-public-key"),
    ];
    let described: usize = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        described,
        routes.len(),
        "a route is described but not listed here"
    );
    for (method, path) in routes {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.contains_key("500"),
            "{method} {path}: no 500 problem"
        );
        for (status, r) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let content = &r["content"];
                if path == "/v1/auth/verify-email" && method == "get" {
                    assert!(content["text/html"].is_object(), "{method} {path} {status}");
                } else if path == "/v1/oauth/token"
                    && ["400", "401", "429"].contains(&status.as_str())
                {
                    // RFC 6749 §5.2 error bodies, not problems.
                    assert!(
                        content["application/json"]["schema"]["$ref"]
                            .as_str()
                            .is_some_and(|r| r.ends_with("/OAuthError")),
                        "{method} {path} {status}: not an RFC 6749 error"
                    );
                } else {
                    assert!(
                        content["application/problem+json"]["schema"].is_object(),
                        "{method} {path} {status}: not a problem+json reply"
                    );
                }
            }
        }
        let bearer = op["security"].to_string().contains("bearer");
        // GET /v1/users/{id} and /v1/users/search take a bearer optionally.
        let takes_bearer = path.starts_with("/v1/sessions")
            || path.starts_with("/v1/admin")
            || path.starts_with("/v1/access")
            || path.starts_with("/v1/users/")
            || (path.starts_with("/v1/notifications") && !path.ends_with("vapid-public-key"))
            || matches!(
                path,
                "/v1/users/me"
                    | "/v1/auth/verify"
                    | "/v1/auth/logout"
                    | "/v1/auth/password/change"
                    | "/v1/auth/step-up"
            );
        assert_eq!(bearer, takes_bearer, "{method} {path}: security");
        if takes_bearer {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
    }
}
