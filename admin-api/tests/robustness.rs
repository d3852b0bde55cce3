//! The admin API under load a client can cause on purpose.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::json;

/// Scenario: installing 1,200 `Cybus::Role` resources took 6.6 s with health blocked all the
/// time (3,000: 26 s): every role reloaded every user and role, under the lock health waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_thousands_of_roles_never_blocks_health() {
    let api = std::sync::Arc::new(TestApi::start_with_body_limit(4 * 1024 * 1024).await);
    let admin = api.admin_token().await;
    let roles = 3000;
    let mut file = String::from("metadata: {name: manyroles}\nresources:\n");
    for i in 0..roles {
        file.push_str(&format!(
            "  role{i}:\n    type: Cybus::Role\n    properties:\n      permissions:\n        - {{resource: services/manyroles/r{i}, operation: read, context: mqtt}}\n"
        ));
    }
    let install = {
        let api = api.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            api.call(
                "POST",
                "/api/services",
                Some(&admin),
                Some(json!({"commissioningFile": file})),
            )
            .await
        })
    };
    let mut answers = 0;
    while !install.is_finished() {
        let (status, body) = api.call("GET", "/api/system/health", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        answers += 1;
        tokio::task::yield_now().await;
    }
    let (status, body) = install.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "enabled", "{body}");
    assert!(
        answers >= 2,
        "health answered {answers} times while the install ran"
    );

    let (_, all) = api.call("GET", "/api/roles", Some(&admin), None).await;
    let owned = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["serviceId"] == "manyroles")
        .count();
    assert_eq!(owned, roles + 1, "every role and the default role");
    // Disabling removes them all, in one go.
    let (status, _) = api
        .call(
            "POST",
            "/api/services/manyroles/operation",
            Some(&admin),
            Some(json!({"operation": "disable"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, all) = api.call("GET", "/api/roles", Some(&admin), None).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|r| r["serviceId"] != "manyroles")
    );
}
