//! `ironbridge service install|enable|disable|delete|list|status`: declarative and idempotent,
//! so the same command can run from a deployment pipeline on every deploy. Each command that
//! changes something prints `changed: ...`, one that found everything as asked prints
//! `ok: ...`; both exit 0.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, Failure, exit};
use super::{Outcome, parse_params};

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Installs a commissioning file, or brings the installed service up to date with it
    /// (file, parameters, target state).
    Install {
        /// The commissioning file (YAML).
        file: PathBuf,
        /// Service id (default: derived from metadata.name).
        #[arg(long)]
        id: Option<String>,
        /// Parameter value, `name=value` (repeatable).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Install it disabled (or disable it if installed).
        #[arg(long)]
        disabled: bool,
    },
    /// Enables an installed service.
    Enable { id: String },
    /// Disables an installed service.
    Disable { id: String },
    /// Deletes a service; `ok` when it is not installed.
    Delete { id: String },
    /// Lists the installed services.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows a service's state and resources; exits 4 unless it is in its target state
    /// without deviations.
    Status {
        id: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, command: ServiceCommand) -> Result<Outcome, Failure> {
    match command {
        ServiceCommand::Install {
            file,
            id,
            params,
            disabled,
        } => install(client, &file, id, &params, disabled).await,
        ServiceCommand::Enable { id } => operate(client, &id, "enable").await,
        ServiceCommand::Disable { id } => operate(client, &id, "disable").await,
        ServiceCommand::Delete { id } => delete(client, &id).await,
        ServiceCommand::List { json } => list(client, json).await,
        ServiceCommand::Status { id, json } => status(client, &id, json).await,
    }
}

async fn install(
    client: &Client,
    file: &PathBuf,
    id: Option<String>,
    params: &[String],
    disabled: bool,
) -> Result<Outcome, Failure> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    let parameters = parse_params(params)?;
    // The id the gateway will use, so the installed service can be looked up first.
    let id = commissioning::service_id_for(&source, id.as_deref(), &parameters).map_err(
        |diagnostics| {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            Failure {
                code: exit::REFUSED,
                message: format!("{}: {}", file.display(), lines.join("; ")),
            }
        },
    )?;
    let target = if disabled { "disabled" } else { "enabled" };
    let path = format!("/api/services/{id}");
    let Some(installed) = client.find(&path).await? else {
        let body = json!({
            "id": id,
            "commissioningFile": source,
            "parameters": parameters,
            "targetState": target,
        });
        let created = client
            .expect(Method::POST, "/api/services", Some(body))
            .await?;
        return Ok(Outcome::changed(format!(
            "service {id} installed ({})",
            created["state"].as_str().unwrap_or(target)
        )));
    };

    let mut changes = Vec::new();
    let same_file = installed["commissioningFile"].as_str() == Some(source.as_str());
    let same_parameters = installed["parameters"]
        .as_object()
        .is_some_and(|current| same_parameters(current, &parameters));
    if !same_file || !same_parameters {
        let body = json!({"commissioningFile": source, "parameters": parameters});
        let updated = client.expect(Method::PUT, &path, Some(body)).await?;
        let restarted: Vec<&str> = updated["changedResources"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        changes.push(match restarted.is_empty() {
            true => "reconfigured".to_string(),
            false => format!("reconfigured (restarted: {})", restarted.join(", ")),
        });
    }
    if installed["targetState"].as_str() != Some(target) {
        let operation = if disabled { "disable" } else { "enable" };
        client
            .expect(
                Method::POST,
                &format!("{path}/operation"),
                Some(json!({"operation": operation})),
            )
            .await?;
        changes.push(format!("{operation}d"));
    }
    Ok(match changes.is_empty() {
        true => Outcome::ok(format!("service {id} is installed as given ({target})")),
        false => Outcome::changed(format!("service {id} {}", changes.join(" and "))),
    })
}

/// Parameters arrive as text; the gateway keeps what it was given, text or JSON values (an
/// install through the API may have sent `502` where the command line sends `"502"`).
fn same_parameters(current: &Map<String, Value>, given: &Map<String, Value>) -> bool {
    current.len() == given.len()
        && given.iter().all(|(name, value)| {
            current
                .get(name)
                .is_some_and(|stored| match (stored, value) {
                    (Value::String(a), Value::String(b)) => a == b,
                    (other, Value::String(b)) => {
                        serde_json::from_str::<Value>(b).is_ok_and(|given| given == *other)
                    }
                    (a, b) => a == b,
                })
        })
}

async fn operate(client: &Client, id: &str, operation: &str) -> Result<Outcome, Failure> {
    let answer = client
        .expect(
            Method::POST,
            &format!("/api/services/{id}/operation"),
            Some(json!({"operation": operation})),
        )
        .await?;
    let state = answer["state"].as_str().unwrap_or("unknown");
    Ok(match answer["changed"].as_bool() {
        Some(false) => Outcome::ok(format!("service {id} is already {state}")),
        _ => Outcome::changed(format!("service {id} {operation}d ({state})")),
    })
}

async fn delete(client: &Client, id: &str) -> Result<Outcome, Failure> {
    let path = format!("/api/services/{id}");
    if client.find(&path).await?.is_none() {
        return Ok(Outcome::ok(format!("service {id} is not installed")));
    }
    client.expect(Method::DELETE, &path, None).await?;
    Ok(Outcome::changed(format!("service {id} deleted")))
}

async fn list(client: &Client, as_json: bool) -> Result<Outcome, Failure> {
    let services = client.expect(Method::GET, "/api/services", None).await?;
    if as_json {
        return Ok(Outcome::output(pretty(&services)));
    }
    let rows: Vec<[String; 5]> = services
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            [
                text(&s["id"]),
                text(&s["state"]),
                text(&s["targetState"]),
                match s["deviated"].as_bool() {
                    Some(true) => "yes".into(),
                    _ => "no".into(),
                },
                text(&s["name"]),
            ]
        })
        .collect();
    Ok(Outcome::output(table(
        ["ID", "STATE", "TARGET", "DEVIATED", "NAME"],
        &rows,
    )))
}

async fn status(client: &Client, id: &str, as_json: bool) -> Result<Outcome, Failure> {
    let path = format!("/api/services/{id}");
    let Some(service) = client.find(&path).await? else {
        return Err(Failure {
            code: exit::REFUSED,
            message: format!("service {id} is not installed"),
        });
    };
    let report = client
        .expect(Method::GET, &format!("{path}/status"), None)
        .await?;
    let state = text(&report["state"]);
    let target = text(&service["targetState"]);
    let deviated = report["deviated"].as_bool().unwrap_or(false);
    let healthy = state == target && !deviated;
    let output = match as_json {
        true => pretty(&report),
        false => {
            let mut out = format!(
                "service {id}: {state} (target {target}){}\n",
                if deviated { ", deviated" } else { "" }
            );
            if let Some(error) = report["lastError"].as_str() {
                out.push_str(&format!("last error: {error}\n"));
            }
            for deviation in report["deviations"].as_array().into_iter().flatten() {
                out.push_str(&format!("deviation: {}\n", text(deviation)));
            }
            let rows: Vec<[String; 4]> = report["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    [
                        text(&r["id"]),
                        text(&r["type"]),
                        text(&r["state"]),
                        r["message"].as_str().unwrap_or_default().to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(["RESOURCE", "TYPE", "STATE", "MESSAGE"], &rows));
            out
        }
    };
    Ok(Outcome {
        message: output,
        code: if healthy {
            exit::SUCCESS
        } else {
            exit::NOT_HEALTHY
        },
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Left-aligned columns, the last one unpadded.
pub(super) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            match i + 1 == N {
                true => line.push_str(cell),
                false => line.push_str(&format!("{cell:<width$}  ", width = widths[i])),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_compare_as_the_command_line_gives_them() {
        let stored = json!({"plcHost": "10.0.0.5", "plcPort": 502, "fast": true});
        let object = |v: Value| v.as_object().cloned().unwrap_or_default();
        let stored = object(stored);
        let given = json!({"plcHost": "10.0.0.5", "plcPort": "502", "fast": "true"});
        assert!(same_parameters(&stored, &object(given)));
        let other = json!({"plcHost": "10.0.0.5", "plcPort": "503", "fast": "true"});
        assert!(!same_parameters(&stored, &object(other)));
        let fewer = json!({"plcHost": "10.0.0.5"});
        assert!(!same_parameters(&stored, &object(fewer)));
    }

    #[test]
    fn tables_align_columns() {
        let rows = [
            [
                "demoplc".to_string(),
                "enabled".to_string(),
                "Demo PLC".to_string(),
            ],
            ["x".to_string(), "disabled".to_string(), "X".to_string()],
        ];
        assert_eq!(
            table(["ID", "STATE", "NAME"], &rows),
            "ID       STATE     NAME\ndemoplc  enabled   Demo PLC\nx        disabled  X\n"
        );
    }
}
