//! Logins, tokens, users, roles and permission checks through the REST API.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{ADMIN_PASSWORD, TestApi, error_code};
use serde_json::json;

#[tokio::test]
async fn login_tokens_logout_and_token_transports() {
    let api = TestApi::start().await;
    let (status, body) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD, "expireTimeInHours": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = body["token"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expires = body["expiresAt"].as_i64().unwrap();
    assert!(
        (expires - now - 7200).abs() < 5,
        "expiresAt {expires} is two hours from now"
    );
    assert!(
        body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["resource"] == "#" && p["context"] == "http")
    );

    let (status, body) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "admin", "password": "wrong"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD, "expireTimeInHours": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = api.call("GET", "/api/users", None, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _) = api
        .call("GET", "/api/users", Some("not-a-token"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call("GET", "/api/users", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call("GET", &format!("/api/users?apiToken={token}"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "?apiToken= works like the header");

    let (status, _) = api.call("POST", "/api/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call("GET", "/api/users", Some(&token), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a logged-out token is revoked: {body}"
    );

    // Revocation survives a restart (it is stored, not only remembered).
    let second = api.admin_token().await;
    let (status, _) = api.call("POST", "/api/logout", Some(&second), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let api = api.restart().await;
    let (status, _) = api.call("GET", "/api/users", Some(&second), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_user() {
    let api = TestApi::start().await;
    for attempt in 0..5 {
        let (status, _) = api
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"username": "admin", "password": format!("guess{attempt}")})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let request = Request::post("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string(),
        ))
        .unwrap();
    let response = tower::ServiceExt::oneshot(api.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits once throttled"
    );
    assert!(response.headers().get(header::RETRY_AFTER).is_some());
    // Another user is not affected (no address is known in-process, so only the user counts).
    let (status, _) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "nobody", "password": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn users_crud_and_token_revocation_by_password_change_and_deletion() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let alice = json!({"username": "alice", "password": "alice-password", "roles": ["minimum-access"],
        "permissions": [{"resource": "/api/services/#", "operation": "read", "context": "http"}]});
    let (status, body) = api
        .call("POST", "/api/users", Some(&admin), Some(alice.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["username"], "alice");
    assert!(
        body.get("password").is_none() && body.get("passwordHash").is_none(),
        "no secrets in responses: {body}"
    );
    let (status, body) = api
        .call("POST", "/api/users", Some(&admin), Some(alice))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict")
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "bob", "password": "short"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "passwords need 8 characters"
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "bob", "password": "long-enough", "roles": ["no-such-role"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "bob", "password": "long-enough", "colour": "red"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are rejected"
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "bad name!", "password": "long-enough"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, list) = api.call("GET", "/api/users", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    let (status, body) = api
        .call("GET", "/api/users/alice", Some(&admin), None)
        .await;
    assert_eq!(
        (status, body["roles"].clone()),
        (StatusCode::OK, json!(["minimum-access"]))
    );
    let (status, _) = api
        .call("GET", "/api/users/nobody", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Alice reads services but may not install or see users.
    let alice_token = api.login("alice", "alice-password").await;
    assert_eq!(
        api.call("GET", "/api/services", Some(&alice_token), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = api
        .call(
            "POST",
            "/api/services",
            Some(&alice_token),
            Some(json!({"commissioningFile": "x"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert_eq!(
        api.call("GET", "/api/users", Some(&alice_token), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call("GET", "/api/system/info", Some(&alice_token), None)
            .await
            .0,
        StatusCode::OK,
        "minimum-access reads system info"
    );
    let (status, body) = api
        .call("GET", "/api/permissions", Some(&alice_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["roles"], json!(["minimum-access"]));
    assert!(
        body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["resource"] == "/api/services/#")
    );

    // Changing her own password needs the old one and ends her other tokens.
    let (status, _) = api
        .call(
            "POST",
            "/api/users/change-password",
            Some(&alice_token),
            Some(json!({"oldPassword": "wrong", "newPassword": "alice-new-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(
            "POST",
            "/api/users/change-password",
            Some(&alice_token),
            Some(json!({"oldPassword": "alice-password", "newPassword": "alice-new-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.call("GET", "/api/services", Some(&alice_token), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let alice_token = api.login("alice", "alice-new-password").await;
    // The old password was verified (and remembered) before; it must not work any more.
    let (status, _) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An admin widens her permissions: effective at once, no new login needed.
    let (status, _) = api
        .call(
            "PUT",
            "/api/users/alice",
            Some(&admin),
            Some(json!({"roles": ["admin"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api.call("GET", "/api/users", Some(&alice_token), None)
            .await
            .0,
        StatusCode::OK
    );

    let (status, _) = api
        .call("DELETE", "/api/users/alice", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.call("GET", "/api/services", Some(&alice_token), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a deleted user's token ends"
    );
    assert_eq!(
        api.call("DELETE", "/api/users/alice", Some(&admin), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = api
        .call("DELETE", "/api/users/admin", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the last administrator stays");
}

#[tokio::test]
async fn roles_crud_builtins_and_roles_in_use() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, roles) = api.call("GET", "/api/roles", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let builtin: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["builtin"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtin, ["admin", "minimum-access"]);
    assert_eq!(
        api.call(
            "PUT",
            "/api/roles/admin",
            Some(&admin),
            Some(json!({"permissions": []}))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.call("DELETE", "/api/roles/minimum-access", Some(&admin), None)
            .await
            .0,
        StatusCode::CONFLICT
    );

    let operator = json!({"name": "operator", "permissions": [{"resource": "services/+/#", "operation": "read", "context": "mqtt"}]});
    let (status, body) = api
        .call("POST", "/api/roles", Some(&admin), Some(operator.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        api.call("POST", "/api/roles", Some(&admin), Some(operator))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (status, _) = api.call("POST", "/api/roles", Some(&admin), Some(json!({"name": "bad", "permissions": [{"resource": "a/#/b", "operation": "read", "context": "mqtt"}]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "`#` must be last");
    let (status, _) = api.call("POST", "/api/roles", Some(&admin), Some(json!({"name": "bad", "permissions": [{"resource": "a", "operation": "delete", "context": "mqtt"}]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = api.call("PUT", "/api/roles/operator", Some(&admin), Some(json!({"permissions": [{"resource": "plant/#", "operation": "readWrite", "context": "mqtt"}]}))).await;
    assert_eq!(
        (status, body["permissions"][0]["resource"].clone()),
        (StatusCode::OK, json!("plant/#"))
    );
    let (status, body) = api
        .call("GET", "/api/roles/operator", Some(&admin), None)
        .await;
    assert_eq!(
        (status, body["builtin"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(
        api.call("GET", "/api/roles/ghost", Some(&admin), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(
            "PUT",
            "/api/roles/ghost",
            Some(&admin),
            Some(json!({"permissions": []}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    api.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "op", "password": "op-password", "roles": ["operator"]})),
    )
    .await;
    let (status, body) = api
        .call("DELETE", "/api/roles/operator", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    api.call("DELETE", "/api/users/op", Some(&admin), None)
        .await;
    assert_eq!(
        api.call("DELETE", "/api/roles/operator", Some(&admin), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn system_routes_openapi_and_unknown_paths() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, body) = api.call("GET", "/api/system/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "health is open for probes: {body}");
    assert_eq!(body["parts"]["database"], "ok");
    assert_eq!(body["parts"]["broker"], "ok");
    let (status, body) = api
        .call("GET", "/api/system/info", Some(&admin), None)
        .await;
    assert_eq!(
        (status, body["version"].clone()),
        (StatusCode::OK, json!(env!("CARGO_PKG_VERSION")))
    );
    let (status, body) = api
        .call("GET", "/api/nothing/here", Some(&admin), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    let (status, doc) = api.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/login",
        "/api/logout",
        "/api/services",
        "/api/services/{id}",
        "/api/services/{id}/operation",
        "/api/services/{id}/status",
        "/api/services/{id}/dependencies",
        "/api/validate/service",
        "/api/users",
        "/api/users/{id}",
        "/api/users/change-password",
        "/api/roles",
        "/api/roles/{id}",
        "/api/permissions",
        "/api/system/health",
        "/api/system/info",
    ] {
        assert!(paths.contains_key(path), "OpenAPI documents {path}");
    }
    assert!(doc["paths"]["/api/services/{id}"]["put"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

/// Anything a client sends gets a 4xx with the error body, never a 5xx.
#[tokio::test]
async fn malformed_requests_never_cause_server_errors() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let routes = [
        ("POST", "/api/login"),
        ("POST", "/api/services"),
        ("PUT", "/api/services/x"),
        ("POST", "/api/services/x/operation"),
        ("POST", "/api/validate/service"),
        ("POST", "/api/users"),
        ("PUT", "/api/users/admin"),
        ("POST", "/api/users/change-password"),
        ("POST", "/api/roles"),
        ("PUT", "/api/roles/r"),
    ];
    let huge = "x".repeat(100 * 1024);
    let bodies: Vec<(&str, String)> = vec![
        ("application/json", "{".into()),
        ("application/json", "null".into()),
        ("application/json", "[]".into()),
        (
            "application/json",
            "{\"username\": 5, \"password\": []}".into(),
        ),
        ("application/json", "\u{0}\u{1}".into()),
        (
            "application/json",
            format!("{{\"commissioningFile\": \"{huge}\"}}"),
        ),
        ("text/plain", "hello".into()),
        ("application/yaml", "a: [".into()),
        ("application/json", String::new()),
    ];
    for (method, path) in routes {
        for (content_type, body) in &bodies {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(header::CONTENT_TYPE, *content_type)
                .body(Body::from(body.clone()))
                .unwrap();
            let (status, response) = api.send(request).await;
            let what = format!(
                "{method} {path} with {content_type} {:?}: {status} {response}",
                &body[..body.len().min(40)]
            );
            if status.is_success() {
                // Validation answers an unreadable file with its diagnostics, not an error.
                assert!(
                    path == "/api/validate/service" && response["valid"] == false,
                    "{what}"
                );
                continue;
            }
            assert!(status.is_client_error(), "{what}");
            error_code(&response);
            if body.len() > 64 * 1024 {
                assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}");
            }
        }
    }
}
