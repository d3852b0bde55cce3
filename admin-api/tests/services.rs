//! Services through the REST API: install, enable, disable, reconfigure, delete, dependencies,
//! rollback, accounts created by commissioning files, and restoring after a restart.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestApi, error_code};
use serde_json::{Value, json};

const PLC: &str = r#"
metadata:
  name: Line PLC
  version: "2"
parameters:
  host: {type: string, default: 10.0.0.5}
  interval: {type: integer, default: 1000, minimum: 100}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection: {host: !ref host, port: 502}
  temperature:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      subscribe: {fc: 3, address: 0, length: 2, dataType: floatBE, interval: !ref interval}
  pressure:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      subscribe: {fc: 3, address: 10, interval: 500}
"#;

async fn install(api: &TestApi, token: &str, body: Value) -> (StatusCode, Value) {
    api.call("POST", "/api/services", Some(token), Some(body))
        .await
}

/// `PUT` on a service path (with any query), as the administrator given.
async fn reconfigure(api: &TestApi, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    api.call("PUT", path, Some(token), Some(body)).await
}

#[tokio::test]
async fn lifecycle_install_status_operate_reconfigure_delete() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, body) = install(&api, &admin, json!({"commissioningFile": PLC})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            body["id"].as_str(),
            body["state"].as_str(),
            body["deviated"].as_bool()
        ),
        (Some("lineplc"), Some("enabled"), Some(false))
    );
    assert_eq!(body["mqttRoot"], "services/lineplc");
    // Started in dependency order: the connection before its endpoints.
    assert_eq!(
        api.runtime.take(),
        [
            "start lineplc::plc",
            "start lineplc::pressure",
            "start lineplc::temperature"
        ]
    );
    let (status, _) = install(&api, &admin, json!({"commissioningFile": PLC})).await;
    assert_eq!(status, StatusCode::CONFLICT, "same id twice");

    let (status, list) = api.call("GET", "/api/services", Some(&admin), None).await;
    assert_eq!(
        (status, list[0]["id"].clone(), list[0]["version"].clone()),
        (StatusCode::OK, json!("lineplc"), json!("2"))
    );
    let (status, detail) = api
        .call("GET", "/api/services/lineplc", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["commissioningFile"], PLC);
    assert_eq!(detail["resources"].as_array().unwrap().len(), 3);

    let (status, report) = api
        .call("GET", "/api/services/lineplc/status", Some(&admin), None)
        .await;
    assert_eq!(
        (status, report["state"].clone(), report["deviated"].clone()),
        (StatusCode::OK, json!("enabled"), json!(false))
    );
    assert_eq!(
        report["resources"][0],
        json!({"id": "plc", "type": "Cybus::Connection", "state": "running"})
    );

    // A resource that leaves its target state makes the service deviated, and says which.
    api.runtime
        .running
        .lock()
        .unwrap()
        .remove(&("lineplc".to_string(), "plc".to_string()));
    let (_, report) = api
        .call("GET", "/api/services/lineplc/status", Some(&admin), None)
        .await;
    assert_eq!(
        (report["deviated"].clone(), report["deviations"].clone()),
        (json!(true), json!(["plc"]))
    );
    api.runtime
        .running
        .lock()
        .unwrap()
        .insert(("lineplc".to_string(), "plc".to_string()), ());

    // A dry run says what a reconfiguration would restart, and changes nothing.
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc?dryRun=true",
        json!({"parameters": {"interval": 250}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changedResources"], json!(["temperature"]));
    assert_eq!(
        body["parameters"],
        json!({}),
        "the parameters stay as they were"
    );
    assert!(api.runtime.take().is_empty(), "a dry run restarts nothing");
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc?dryRun=true",
        json!({"parameters": {"interval": 5}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc?dryRun=perhaps",
        json!({"parameters": {"interval": 250}}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{body}"
    );

    // Reconfigure with a new parameter: only the endpoint using it restarts.
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc",
        json!({"parameters": {"interval": 250}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changedResources"], json!(["temperature"]));
    assert_eq!(
        api.runtime.take(),
        ["stop lineplc::temperature", "start lineplc::temperature"]
    );
    assert_eq!(body["parameters"], json!({"interval": 250}));
    // An invalid reconfigure changes nothing.
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc",
        json!({"parameters": {"interval": 5}}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_commissioning_file"
        )
    );
    assert_eq!(
        body["error"]["details"]["diagnostics"][0]["path"],
        "parameters.interval"
    );
    assert!(api.runtime.take().is_empty());
    let (_, detail) = api
        .call("GET", "/api/services/lineplc", Some(&admin), None)
        .await;
    assert_eq!(detail["parameters"], json!({"interval": 250}));
    let (status, _) = reconfigure(&api, &admin, "/api/services/lineplc", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A new file: the removed endpoint stops, the changed connection and the endpoint on it
    // restart (in reverse start order, then start order).
    let new_file = PLC.replace("  pressure:\n    type: Cybus::Endpoint\n    properties:\n      protocol: Modbus\n      connection: !ref plc\n      subscribe: {fc: 3, address: 10, interval: 500}\n", "").replace("port: 502", "port: 5020");
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc",
        json!({"commissioningFile": new_file}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["changedResources"],
        json!(["plc", "pressure", "temperature"])
    );
    assert_eq!(
        api.runtime.take(),
        [
            "stop lineplc::temperature",
            "stop lineplc::pressure",
            "stop lineplc::plc",
            "start lineplc::plc",
            "start lineplc::temperature"
        ]
    );

    let (status, body) = api
        .call(
            "POST",
            "/api/services/lineplc/operation",
            Some(&admin),
            Some(json!({"operation": "disable"})),
        )
        .await;
    assert_eq!(
        (status, body["state"].clone(), body["changed"].clone()),
        (StatusCode::OK, json!("disabled"), json!(true))
    );
    assert_eq!(
        api.runtime.take(),
        ["stop lineplc::temperature", "stop lineplc::plc"]
    );
    let (_, body) = api
        .call(
            "POST",
            "/api/services/lineplc/operation",
            Some(&admin),
            Some(json!({"operation": "disable"})),
        )
        .await;
    assert_eq!(body["changed"], false, "disabling twice changes nothing");
    let (_, report) = api
        .call("GET", "/api/services/lineplc/status", Some(&admin), None)
        .await;
    assert_eq!(
        (report["state"].clone(), report["deviated"].clone()),
        (json!("disabled"), json!(false))
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/services/lineplc/operation",
            Some(&admin),
            Some(json!({"operation": "restart"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = api
        .call(
            "POST",
            "/api/services/lineplc/operation",
            Some(&admin),
            Some(json!({"operation": "enable"})),
        )
        .await;
    assert_eq!(
        (body["state"].clone(), body["changed"].clone()),
        (json!("enabled"), json!(true))
    );
    api.runtime.take();

    let (status, _) = api
        .call("DELETE", "/api/services/lineplc", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.runtime.take(),
        ["stop lineplc::temperature", "stop lineplc::plc"]
    );
    for (method, path) in [
        ("GET", "/api/services/lineplc"),
        ("GET", "/api/services/lineplc/status"),
        ("DELETE", "/api/services/lineplc"),
        ("GET", "/api/services/lineplc/dependencies"),
    ] {
        assert_eq!(
            api.call(method, path, Some(&admin), None).await.0,
            StatusCode::NOT_FOUND,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn yaml_install_with_query_parameters_and_validation_route() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let request =
        Request::post("/api/services?id=line2&targetState=disabled&host=192.168.1.20&interval=200")
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(Body::from(PLC))
            .unwrap();
    let (status, body) = api.send(request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["id"].clone(), body["state"].clone()),
        (json!("line2"), json!("disabled"))
    );
    assert_eq!(
        body["parameters"],
        json!({"host": "192.168.1.20", "interval": "200"})
    );
    assert!(
        api.runtime.take().is_empty(),
        "a disabled install starts nothing"
    );

    let (status, body) = api
        .call(
            "POST",
            "/api/validate/service",
            Some(&admin),
            Some(json!({"commissioningFile": PLC, "parameters": {"interval": "fast"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], false);
    assert_eq!(
        body["diagnostics"][0]["message"],
        "expected an integer, got string \"fast\""
    );
    let (_, body) = api
        .call(
            "POST",
            "/api/validate/service",
            Some(&admin),
            Some(json!({"commissioningFile": PLC})),
        )
        .await;
    // The declared parameters come back in file order, for forms that ask for them.
    assert_eq!(
        body,
        json!({"valid": true, "diagnostics": [], "parameters": [
            {"name": "host", "schema": {"type": "string", "default": "10.0.0.5"}},
            {"name": "interval", "schema": {"type": "integer", "default": 1000, "minimum": 100.0}},
        ]})
    );
    // A file with errors still declares its parameters; one that is not YAML declares none.
    let (_, body) = api
        .call(
            "POST",
            "/api/validate/service",
            Some(&admin),
            Some(json!({"commissioningFile": PLC.replace("port: 502", "port: 502, colour: red")})),
        )
        .await;
    assert_eq!(
        (body["valid"].clone(), body["parameters"][1]["name"].clone()),
        (json!(false), json!("interval"))
    );
    let (_, body) = api
        .call(
            "POST",
            "/api/validate/service",
            Some(&admin),
            Some(json!({"commissioningFile": "metadata: [unclosed"})),
        )
        .await;
    assert_eq!(body["parameters"], json!([]));
    // A Connectware property Ironbridge does not implement is a warning: the file is valid.
    let (_, body) = api
        .call(
            "POST",
            "/api/validate/service",
            Some(&admin),
            Some(json!({"commissioningFile": "metadata: {name: Buffered}\nresources:\n  m:\n    type: Cybus::Mapping\n    properties:\n      inputBuffering: {enabled: true}\n      mappings: [{subscribe: {topic: a}, publish: {topic: b}}]\n"})),
        )
        .await;
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["diagnostics"][0]["severity"], "warning", "{body}");
    assert_eq!(
        body["diagnostics"][0]["path"],
        "resources.m.properties.inputBuffering"
    );
    let (_, list) = api.call("GET", "/api/services", Some(&admin), None).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "validation installs nothing"
    );

    let (status, body) = install(&api, &admin, json!({"commissioningFile": "metadata: {name: Broken}\nresources:\n  a: {type: Cybus::Nope}\n"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["details"]["diagnostics"][0],
        json!({"path": "resources.a.type", "line": 3, "column": 13, "severity": "error",
        "message": "unknown resource type `Cybus::Nope`; supported: Cybus::Connection, Cybus::Endpoint, Cybus::Mapping, Cybus::User, Cybus::Role, Cybus::Server::Http, Cybus::Node::Http, Cybus::Server::Opcua, Cybus::Node::Opcua"})
    );
    let (status, _) = install(
        &api,
        &admin,
        json!({"id": "bad id!", "commissioningFile": PLC}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = install(
        &api,
        &admin,
        json!({"commissioningFile": PLC, "targetState": "sideways"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

const USES_LINE_PLC: &str = r#"
metadata: {name: Line Dashboard}
resources:
  speed:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref lineplc::plc
      read: {fc: 4, address: 3}
"#;

#[tokio::test]
async fn dependencies_between_services() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, body) = install(&api, &admin, json!({"commissioningFile": USES_LINE_PLC})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "lineplc is not installed yet: {body}"
    );
    assert!(
        body["error"]["details"]["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("install `lineplc` first")
    );

    install(
        &api,
        &admin,
        json!({"commissioningFile": PLC, "targetState": "disabled"}),
    )
    .await;
    let (status, body) = install(&api, &admin, json!({"commissioningFile": USES_LINE_PLC})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "failed", "its dependency is disabled");
    assert!(
        body["lastError"].as_str().unwrap().contains("lineplc"),
        "{body}"
    );
    // The list says why too, so a console need not ask each failed service.
    let (_, list) = api.call("GET", "/api/services", Some(&admin), None).await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "linedashboard")
        .unwrap();
    assert_eq!(listed["state"], "failed");
    assert_eq!(listed["lastError"], body["lastError"], "{listed}");
    assert_eq!(listed["deviations"], json!([]), "{listed}");
    let (status, body) = api
        .call(
            "POST",
            "/api/services/linedashboard/operation",
            Some(&admin),
            Some(json!({"operation": "enable"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict")
    );

    api.call(
        "POST",
        "/api/services/lineplc/operation",
        Some(&admin),
        Some(json!({"operation": "enable"})),
    )
    .await;
    let (_, body) = api
        .call(
            "POST",
            "/api/services/linedashboard/operation",
            Some(&admin),
            Some(json!({"operation": "enable"})),
        )
        .await;
    assert_eq!(body["state"], "enabled");

    let (status, deps) = api
        .call(
            "GET",
            "/api/services/lineplc/dependencies",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, deps),
        (
            StatusCode::OK,
            json!({"dependsOn": [], "dependedOnBy": ["linedashboard"]})
        )
    );
    let (_, deps) = api
        .call(
            "GET",
            "/api/services/linedashboard/dependencies",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deps, json!({"dependsOn": ["lineplc"], "dependedOnBy": []}));

    let (status, body) = api
        .call("DELETE", "/api/services/lineplc", Some(&admin), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict")
    );
    let without_plc = PLC
        .replace("  plc:\n", "  plc2:\n")
        .replace("!ref plc\n", "!ref plc2\n");
    let (status, body) = reconfigure(
        &api,
        &admin,
        "/api/services/lineplc",
        json!({"commissioningFile": without_plc}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "reconfigure must not remove a referenced resource: {body}"
    );

    assert_eq!(
        api.call("DELETE", "/api/services/linedashboard", Some(&admin), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call("DELETE", "/api/services/lineplc", Some(&admin), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

const ACCOUNTS: &str = r#"
metadata: {name: Plant Users}
parameters:
  password: {type: string, minLength: 12}
resources:
  readers:
    type: Cybus::Role
    properties:
      permissions:
        - {resource: services/+/#, operation: read, context: mqtt}
        - {resource: /api/services/#, operation: read, context: http}
  defaultRole:
    type: Cybus::Role
    properties:
      permissions:
        - {resource: plant/#, operation: write, context: mqtt}
  dashboard:
    type: Cybus::User
    properties:
      password: !ref password
      roles: [!ref readers]
"#;

#[tokio::test]
async fn accounts_from_commissioning_files_come_and_go_with_the_service() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, body) = install(
        &api,
        &admin,
        json!({"commissioningFile": ACCOUNTS, "parameters": {"password": "dashboard-secret"}}),
    )
    .await;
    assert_eq!(
        (status, body["state"].clone()),
        (StatusCode::CREATED, json!("enabled")),
        "{body}"
    );

    let (_, user) = api
        .call("GET", "/api/users/plantusers.dashboard", Some(&admin), None)
        .await;
    assert_eq!(
        (user["roles"].clone(), user["serviceId"].clone()),
        (json!(["plantusers.readers"]), json!("plantusers"))
    );
    let token = api.login("plantusers.dashboard", "dashboard-secret").await;
    assert_eq!(
        api.call("GET", "/api/services", Some(&token), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.call("GET", "/api/users", Some(&token), None).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = reconfigure(
        &api,
        &admin,
        "/api/users/plantusers.dashboard",
        json!({"roles": []}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "service-owned users change through the service"
    );

    // The service's own broker user holds its default role: the root, plus `defaultRole`.
    let (_, broker_user) = api
        .call("GET", "/api/users/plantusers", Some(&admin), None)
        .await;
    assert_eq!(broker_user["roles"], json!(["plantusers.defaultRole"]));
    let (_, role) = api
        .call(
            "GET",
            "/api/roles/plantusers.defaultRole",
            Some(&admin),
            None,
        )
        .await;
    let resources: Vec<&str> = role["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["resource"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["services/plantusers/#", "plant/#"]);

    api.call(
        "POST",
        "/api/services/plantusers/operation",
        Some(&admin),
        Some(json!({"operation": "disable"})),
    )
    .await;
    for path in [
        "/api/users/plantusers.dashboard",
        "/api/users/plantusers",
        "/api/roles/plantusers.readers",
        "/api/roles/plantusers.defaultRole",
    ] {
        assert_eq!(
            api.call("GET", path, Some(&admin), None).await.0,
            StatusCode::NOT_FOUND,
            "{path} is gone with the service"
        );
    }
    assert_eq!(
        api.call("GET", "/api/services", Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_failure_while_enabling_rolls_back_what_was_started() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    let (status, body) = install(
        &api,
        &admin,
        json!({"commissioningFile": ACCOUNTS, "parameters": {"password": "dashboard-secret"},
               "targetState": "disabled"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // While it is disabled, an administrator takes the name the service's user would get.
    api.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "plantusers.dashboard", "password": "taken-already"})),
    )
    .await;
    let (status, body) = api
        .call(
            "POST",
            "/api/services/plantusers/operation",
            Some(&admin),
            Some(json!({"operation": "enable"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("rolled back") && message.contains("dashboard"),
        "{message}"
    );
    for path in [
        "/api/roles/plantusers.readers",
        "/api/users/plantusers",
        "/api/roles/plantusers.defaultRole",
    ] {
        assert_eq!(
            api.call("GET", path, Some(&admin), None).await.0,
            StatusCode::NOT_FOUND,
            "{path} was rolled back"
        );
    }
    assert_eq!(
        api.call("GET", "/api/users/plantusers.dashboard", Some(&admin), None)
            .await
            .0,
        StatusCode::OK,
        "the other user is untouched"
    );
}

#[tokio::test]
async fn enabled_services_come_back_after_a_restart() {
    let api = TestApi::start().await;
    let admin = api.admin_token().await;
    install(
        &api,
        &admin,
        json!({"commissioningFile": PLC, "parameters": {"interval": 300}}),
    )
    .await;
    install(
        &api,
        &admin,
        json!({"id": "spare", "commissioningFile": PLC, "targetState": "disabled"}),
    )
    .await;
    install(&api, &admin, json!({"commissioningFile": USES_LINE_PLC})).await;
    let api = api.restart().await;
    let mut started = api.runtime.take();
    started.sort();
    assert_eq!(
        started,
        [
            "start linedashboard::speed",
            "start lineplc::plc",
            "start lineplc::pressure",
            "start lineplc::temperature"
        ]
    );
    let admin = api.admin_token().await;
    let (_, list) = api.call("GET", "/api/services", Some(&admin), None).await;
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&("lineplc".into(), "enabled".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("linedashboard".into(), "enabled".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("spare".into(), "disabled".into())),
        "{states:?}"
    );
    let (_, detail) = api
        .call("GET", "/api/services/lineplc", Some(&admin), None)
        .await;
    assert_eq!(detail["parameters"], json!({"interval": 300}));
}
