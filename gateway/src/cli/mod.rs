//! Commands that manage a running gateway through its REST API (`ironbridge service ...`,
//! `ironbridge user ...`), for operators and deployment pipelines.

pub mod client;
pub mod service;
pub mod user;

use std::process::ExitCode;

use serde_json::{Map, Value};

use client::{Client, Failure, Target, exit};

/// What a successful command prints, and its exit code.
#[derive(Debug)]
pub struct Outcome {
    pub message: String,
    pub code: u8,
}

impl Outcome {
    fn changed(message: impl std::fmt::Display) -> Outcome {
        Outcome {
            message: format!("changed: {message}"),
            code: exit::SUCCESS,
        }
    }

    fn ok(message: impl std::fmt::Display) -> Outcome {
        Outcome {
            message: format!("ok: {message}"),
            code: exit::SUCCESS,
        }
    }

    fn output(message: String) -> Outcome {
        Outcome {
            message,
            code: exit::SUCCESS,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Remote {
    /// Install, enable, disable, delete, list services and show their status.
    Service {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: service::ServiceCommand,
    },
    /// Create, delete, list users and set their passwords.
    User {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: user::UserCommand,
    },
}

/// `ironbridge health`: the container health check (distroless images have no curl). Exit 0
/// when `/api/system/health` says ok, 1 when it says degraded, 3 when nothing answers.
pub fn health(target: &Target) -> ExitCode {
    let result = block_on(async {
        let client = Client::anonymous(target)?;
        client
            .request(reqwest::Method::GET, "/api/system/health", None)
            .await
    });
    match result {
        Ok(client::Answer::Ok(body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok(client::Answer::Refused(refusal)) => {
            println!("the gateway is not healthy ({})", refusal.status);
            ExitCode::from(exit::REFUSED)
        }
        Err(failure) => failure.report(),
    }
}

/// Runs one command against the gateway it names and turns the result into an exit code.
pub fn run(command: Remote) -> ExitCode {
    let result = block_on(async {
        match command {
            Remote::Service { target, command } => {
                service::run(&Client::connect(&target).await?, command).await
            }
            Remote::User { target, command } => {
                user::run(&Client::connect(&target).await?, command).await
            }
        }
    });
    match result {
        Ok(outcome) => {
            let message = outcome.message.trim_end();
            if !message.is_empty() {
                println!("{message}");
            }
            ExitCode::from(outcome.code)
        }
        Err(failure) => failure.report(),
    }
}

/// A command is one short conversation: a single-threaded runtime is all it needs.
fn block_on<T>(work: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the async runtime: {e}")))?
        .block_on(work)
}

/// `name=value` pairs into commissioning parameters (values as text; the file's parameter
/// types convert them).
pub fn parse_params(params: &[String]) -> Result<Map<String, Value>, Failure> {
    params
        .iter()
        .map(|param| match param.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                Ok((name.to_string(), Value::String(value.to_string())))
            }
            _ => Err(Failure::usage(format!(
                "--param {param:?} must be NAME=VALUE"
            ))),
        })
        .collect()
}
