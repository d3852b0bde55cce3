//! Privilege boundaries of the admin API, each reproducing an attack that worked before it was
//! fixed: escalation through users, roles and commissioning files, account names shared with a
//! service, tokens of a deleted user, secrets in answers, login lock-outs, the open health route.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::{TestApi, error_code};
use serde_json::{Value, json};

/// A user who may install services and read users, and holds nothing else.
async fn installer(api: &TestApi, admin: &str) -> String {
    let (status, body) = api
        .call(
            "POST",
            "/api/users",
            Some(admin),
            Some(
                json!({"username": "installer", "password": "installer-password",
                "permissions": [
                    {"resource": "/api/services/#", "operation": "readWrite", "context": "http"},
                    {"resource": "/api/services", "operation": "readWrite", "context": "http"},
                    {"resource": "services/#", "operation": "readWrite", "context": "mqtt"},
                ]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    api.login("installer", "installer-password").await
}

fn install_body(file: &str) -> Value {
    json!({"commissioningFile": file})
}

const ADMIN_BY_FILE: &str = r#"
metadata: {name: sneaky}
resources:
  boss:
    type: Cybus::User
    properties:
      password: boss-password-1
      permissions:
        - {resource: '#', operation: readWrite, context: http}
"#;

const WILDCARD_ROOT: &str = r#"
metadata: {name: everything}
definitions:
  CYBUS_MQTT_ROOT: '+'
resources:
  reader:
    type: Cybus::Role
    properties:
      permissions: []
"#;

const OWN_TOPICS: &str = r#"
metadata: {name: line}
resources:
  viewer:
    type: Cybus::User
    properties:
      password: viewer-password-1
      permissions:
        - {resource: services/line/#, operation: read, context: mqtt}
"#;

/// Scenario: a user who may only write `/api/services` installed a `Cybus::User` with http `#`,
/// logged in as it and was admin.
#[tokio::test]
async fn a_commissioning_file_grants_no_more_than_its_installer_holds() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let installer = installer(&api, &admin).await;

    let (status, body) = api
        .call(
            "POST",
            "/api/services",
            Some(&installer),
            Some(install_body(ADMIN_BY_FILE)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("resources.boss") && message.contains("http readWrite"),
        "{message}"
    );
    assert_eq!(
        api.call("GET", "/api/services/sneaky", Some(&admin), None)
            .await
            .0,
        StatusCode::NOT_FOUND,
        "a refused file installs nothing"
    );
    // The admin holds everything, so the same file installs for them.
    let (status, _) = api
        .call(
            "POST",
            "/api/services",
            Some(&admin),
            Some(install_body(ADMIN_BY_FILE)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Within what the installer holds, a file installs, and a reconfigure that adds more is
    // refused just the same.
    let (status, body) = api
        .call(
            "POST",
            "/api/services",
            Some(&installer),
            Some(install_body(OWN_TOPICS)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let widened = OWN_TOPICS.replace("services/line/#, operation: read", "'#', operation: read");
    let (status, body) = api
        .call(
            "PUT",
            "/api/services/line",
            Some(&installer),
            Some(json!({"commissioningFile": widened})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// Scenario: `CYBUS_MQTT_ROOT: '+'` gave the service's broker user `+/#` over every service and
/// `$SYS`.
#[tokio::test]
async fn a_service_topic_root_is_concrete_and_its_own() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    for root in ["'+'", "'plant/#'", "'$SYS/x'", "'a//b'"] {
        let file = WILDCARD_ROOT.replace("'+'", root);
        let (status, body) = api
            .call(
                "POST",
                "/api/services",
                Some(&admin),
                Some(install_body(&file)),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{root}: {body}");
        let diagnostic = &body["error"]["details"]["diagnostics"][0];
        assert_eq!(diagnostic["path"], "definitions.CYBUS_MQTT_ROOT", "{body}");
        assert_eq!(diagnostic["line"], 4, "{body}");
    }
    let plant = WILDCARD_ROOT.replace("'+'", "plant/line1");
    let (status, _) = api
        .call(
            "POST",
            "/api/services",
            Some(&admin),
            Some(install_body(&plant)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Another service below, above or at the same root would share its topics.
    for root in ["plant", "plant/line1/cell", "plant/line1"] {
        let file = WILDCARD_ROOT
            .replace("'+'", root)
            .replace("name: everything", "name: other");
        let (status, body) = api
            .call(
                "POST",
                "/api/services",
                Some(&admin),
                Some(install_body(&file)),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{root}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("overlaps"),
            "{body}"
        );
    }
    let sibling = WILDCARD_ROOT
        .replace("'+'", "plant/line10")
        .replace("name: everything", "name: other");
    let (status, _) = api
        .call(
            "POST",
            "/api/services",
            Some(&admin),
            Some(install_body(&sibling)),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "plant/line10 is not below plant/line1"
    );
}

/// Scenario: whoever may edit users gave themselves (or a friend) the admin role.
#[tokio::test]
async fn users_and_roles_grant_no_more_than_their_editor_holds() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, _) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(
                json!({"username": "helpdesk", "password": "helpdesk-password",
                "permissions": [
                    {"resource": "/api/users/#", "operation": "readWrite", "context": "http"},
                    {"resource": "/api/users", "operation": "readWrite", "context": "http"},
                    {"resource": "/api/roles", "operation": "readWrite", "context": "http"},
                    {"resource": "dashboards/#", "operation": "read", "context": "mqtt"},
                ]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let helpdesk = api.login("helpdesk", "helpdesk-password").await;

    let attempts = [
        (
            "POST",
            "/api/users",
            json!({"username": "friend", "password": "friend-password", "roles": ["admin"]}),
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "friend", "password": "friend-password",
            "permissions": [{"resource": "#", "operation": "read", "context": "mqtt"}]}),
        ),
        ("PUT", "/api/users/helpdesk", json!({"roles": ["admin"]})),
        (
            "POST",
            "/api/roles",
            json!({"name": "wide", "permissions": [
            {"resource": "/api/#", "operation": "write", "context": "http"}]}),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = api
            .call(method, path, Some(&helpdesk), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} {body}: {answer}"
        );
        assert_eq!(error_code(&answer), "forbidden");
    }
    let (_, me) = api
        .call("GET", "/api/users/helpdesk", Some(&admin), None)
        .await;
    assert_eq!(me["roles"], json!([]), "nothing changed");

    // What the editor holds, it may hand on.
    let (status, body) = api
        .call(
            "POST",
            "/api/users",
            Some(&helpdesk),
            Some(json!({"username": "viewer", "password": "viewer-password",
                "permissions": [{"resource": "dashboards/line1/#", "operation": "read", "context": "mqtt"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Scenario: an administrator's user `secops.viewer` and role `secops.readers`; a service
/// `secops` with resources `viewer` and `readers` failed to enable, and deleting the service
/// deleted the administrator's accounts.
#[tokio::test]
async fn a_service_never_touches_accounts_it_did_not_create() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    api.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "secops.viewer", "password": "viewer-password"})),
    )
    .await;
    api.call(
        "POST",
        "/api/roles",
        Some(&admin),
        Some(json!({"name": "secops.readers", "permissions": []})),
    )
    .await;
    let file = r#"
metadata: {name: secops}
resources:
  readers:
    type: Cybus::Role
    properties:
      permissions: []
  viewer:
    type: Cybus::User
    properties:
      password: service-viewer-1
      roles: [!ref readers]
"#;
    let (status, body) = api
        .call(
            "POST",
            "/api/services",
            Some(&admin),
            Some(install_body(file)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("secops.") && message.contains("an administrator created"),
        "{message}"
    );
    assert_eq!(
        api.call("GET", "/api/services/secops", Some(&admin), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // The collision can also arise later, while the service is disabled: enabling then fails,
    // and deleting the service leaves the administrator's accounts alone.
    api.call("DELETE", "/api/users/secops.viewer", Some(&admin), None)
        .await;
    api.call("DELETE", "/api/roles/secops.readers", Some(&admin), None)
        .await;
    let (status, _) = api
        .call(
            "POST",
            "/api/services",
            Some(&admin),
            Some(json!({"commissioningFile": file, "targetState": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "secops.viewer", "password": "viewer-password"})),
    )
    .await;
    let (status, _) = api
        .call(
            "POST",
            "/api/services/secops/operation",
            Some(&admin),
            Some(json!({"operation": "enable"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api
        .call("DELETE", "/api/services/secops", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, user) = api
        .call("GET", "/api/users/secops.viewer", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["serviceId"], Value::Null);
    api.login("secops.viewer", "viewer-password").await;
}

/// Scenario: delete `u1`, create `u1` again: the first `u1`'s token worked again, because the
/// token generation restarted at 0.
#[tokio::test]
async fn a_deleted_users_token_stays_dead_when_the_name_comes_back() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let create =
        json!({"username": "u1", "password": "first-password", "roles": ["minimum-access"]});
    api.call("POST", "/api/users", Some(&admin), Some(create.clone()))
        .await;
    let old_token = api.login("u1", "first-password").await;
    api.call("DELETE", "/api/users/u1", Some(&admin), None)
        .await;
    api.call("POST", "/api/users", Some(&admin), Some(create))
        .await;
    let (status, body) = api
        .call("GET", "/api/permissions", Some(&old_token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let new_token = api.login("u1", "first-password").await;
    assert_eq!(
        api.call("GET", "/api/permissions", Some(&new_token), None)
            .await
            .0,
        StatusCode::OK
    );
}

const CLOUD: &str = r#"
metadata: {name: cloud}
description: !sub 'Broker user ${Cybus::MqttUser}, password ${Cybus::MqttPassword}'
parameters:
  cloudPassword: {type: string}
  deviceKey: {type: string, format: password, default: device-default-secret}
  host: {type: string, default: broker.example.com}
resources:
  uplink:
    type: Cybus::Connection
    properties:
      protocol: Mqtt
      connection:
        host: !ref host
        username: gateway
        password: !ref cloudPassword
  plc:
    type: Cybus::Connection
    properties:
      protocol: Opcua
      connection:
        host: plc.local
        port: 4840
        username: operator
        password: literal-opcua-secret
"#;

/// Scenario: a read-only user read `parameters.cloudPassword`, literal passwords in the file and
/// `!sub` expansions of `Cybus::MqttPassword` from `GET /api/services/{id}`.
#[tokio::test]
async fn secrets_are_masked_in_every_answer_and_survive_a_round_trip() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, body) = api
        .call(
            "POST",
            "/api/services",
            Some(&admin),
            Some(json!({"commissioningFile": CLOUD, "parameters": {"cloudPassword": "cloud-secret-42"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mqtt_password = api
        .admin
        .service("cloud")
        .await
        .unwrap()
        .record
        .mqtt_password;
    api.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "reader", "password": "reader-password",
            "permissions": [{"resource": "/api/services/#", "operation": "read", "context": "http"}]})),
    )
    .await;
    let reader = api.login("reader", "reader-password").await;
    let (status, detail) = api
        .call("GET", "/api/services/cloud", Some(&reader), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = detail.to_string();
    for secret in [
        "cloud-secret-42",
        "device-default-secret",
        "literal-opcua-secret",
        &mqtt_password,
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {detail}");
    }
    assert_eq!(detail["parameters"]["cloudPassword"], "********");
    assert!(
        detail["commissioningFile"]
            .as_str()
            .unwrap()
            .contains("password: ********")
    );
    assert!(
        detail["description"]
            .as_str()
            .unwrap()
            .ends_with("password ********"),
        "{detail}"
    );
    assert_eq!(
        detail["parameters"]["host"],
        Value::Null,
        "defaults are not echoed as given"
    );

    // What the API showed comes back unchanged: the stored secrets are kept.
    let (status, body) = api
        .call(
            "PUT",
            "/api/services/cloud",
            Some(&admin),
            Some(json!({"commissioningFile": detail["commissioningFile"],
                        "parameters": {"cloudPassword": "********", "host": "broker2.example.com"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = api.admin.service("cloud").await.unwrap();
    assert_eq!(stored.record.parameters["cloudPassword"], "cloud-secret-42");
    assert!(
        stored
            .record
            .commissioning_file
            .contains("literal-opcua-secret")
    );
    assert_eq!(body["changedResources"], json!(["uplink"]), "{body}");

    // A file edited elsewhere but still carrying a mask cannot be restored: refused, unchanged.
    let edited = detail["commissioningFile"]
        .as_str()
        .unwrap()
        .replace("plc.local", "plc2.local");
    let (status, body) = api
        .call(
            "PUT",
            "/api/services/cloud",
            Some(&admin),
            Some(json!({"commissioningFile": edited})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        api.admin
            .service("cloud")
            .await
            .unwrap()
            .record
            .commissioning_file
            .contains("plc.local")
    );
}

/// Scenario: five wrong passwords for `admin` from anywhere locked the administrator out.
#[tokio::test]
async fn failed_logins_slow_down_the_guessing_address_not_the_user() {
    let api = TestApi::start().await;
    let login_from = |address: &str, password: &str| {
        let mut request = Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": "admin", "password": password}).to_string(),
            ))
            .unwrap();
        let address: SocketAddr = address.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(address));
        request
    };
    for attempt in 0..6 {
        let (status, _) = api
            .send(login_from("10.0.0.66:5000", &format!("guess{attempt}")))
            .await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&status),
            "{status}"
        );
    }
    let (status, _) = api
        .send(login_from("10.0.0.66:5001", common::ADMIN_PASSWORD))
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessing address waits"
    );
    let (status, body) = api
        .send(login_from("10.0.0.7:5000", common::ADMIN_PASSWORD))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the administrator elsewhere is not locked out: {body}"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = TestApi::start().await;
    let token = api.admin_token().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = Request::get("/api/permissions")
            .header(header::AUTHORIZATION, format!("{scheme} {token}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = api.send(request).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
    }
    let request = Request::get("/api/permissions")
        .header(header::AUTHORIZATION, format!("Basic {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::UNAUTHORIZED);
}

/// Scenario: the open health route named services (and, in the gateway, connections and the
/// external broker's user).
#[tokio::test]
async fn health_names_things_only_to_logged_in_users() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (_, open) = api.call("GET", "/api/system/health", None, None).await;
    assert_eq!(open["parts"]["services"]["failed"], 0, "{open}");
    let (_, logged_in) = api
        .call("GET", "/api/system/health", Some(&admin), None)
        .await;
    assert_eq!(
        logged_in["parts"]["services"]["failed"],
        json!([]),
        "{logged_in}"
    );
}
