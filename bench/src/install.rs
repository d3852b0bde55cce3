//! `ironbridge-bench install`: installing a commissioning file with many resources through the
//! REST API of the real binary, and how long `/api/system/health` takes meanwhile. Installing
//! must cost time linear in the file, and health must never wait for it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::endtoend::{GatewayProcess, login, request};

pub struct Options {
    /// Sizes of the files installed, in `Cybus::Role` resources.
    pub roles: Vec<usize>,
}

/// A service with `roles` roles, each granting read on its own topic below the service root.
fn file_with_roles(roles: usize) -> String {
    let mut file = format!("metadata: {{name: roles{roles}}}\nresources:\n");
    for i in 0..roles {
        file.push_str(&format!(
            "  role{i}:\n    type: Cybus::Role\n    properties:\n      permissions:\n        - {{resource: services/roles{roles}/r{i}, operation: read, context: mqtt}}\n"
        ));
    }
    file
}

pub async fn run(ironbridge: &Path, options: Options) -> anyhow::Result<()> {
    println!(
        "| roles | install (s) | per role (ms) | health answers during install | slowest health (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for roles in options.roles {
        let gateway = GatewayProcess::start(ironbridge)?;
        let http: SocketAddr = ([127, 0, 0, 1], gateway.http).into();
        crate::brokers::wait_for_port(gateway.http)?;
        let token = login(http).await?;
        let body = serde_json::json!({"commissioningFile": file_with_roles(roles)}).to_string();
        let started = Instant::now();
        let install = tokio::spawn(async move {
            request(http, "POST", "/api/services", Some(&token), &body).await
        });
        let mut answers = 0u32;
        let mut slowest = Duration::ZERO;
        while !install.is_finished() {
            let asked = Instant::now();
            let (status, _) = request(http, "GET", "/api/system/health", None, "").await?;
            anyhow::ensure!(status == 200, "health answered {status}");
            slowest = slowest.max(asked.elapsed());
            answers += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, response) = install.await??;
        anyhow::ensure!(status == 201, "install failed ({status}): {response}");
        let took = started.elapsed();
        println!(
            "| {roles} | {:.2} | {:.2} | {answers} | {:.1} |",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / roles as f64,
            slowest.as_secs_f64() * 1000.0
        );
        drop(gateway);
    }
    Ok(())
}
