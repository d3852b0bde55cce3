//! `ironbridge user create|delete|set-password|list`: the admin users and their roles, idempotent
//! like `service`. Passwords never appear on the command line (where `ps` and shell histories
//! would show them): they come from IRONBRIDGE_USER_PASSWORD.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use super::Outcome;
use super::client::{Client, Failure};
use super::service::table;

const PASSWORD_VARIABLE: &str = "IRONBRIDGE_USER_PASSWORD";

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Creates a user with the password from IRONBRIDGE_USER_PASSWORD, or gives an existing one
    /// exactly these roles (its password stays).
    Create {
        #[arg(value_name = "USER")]
        name: String,
        /// Role name (repeatable).
        #[arg(long = "role", short = 'r')]
        roles: Vec<String>,
    },
    /// Sets a user's password from IRONBRIDGE_USER_PASSWORD.
    SetPassword {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Deletes a user; `ok` when there is none.
    Delete {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Lists the users and their roles.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, command: UserCommand) -> Result<Outcome, Failure> {
    match command {
        // `name`, not `username`: that is the login's --username.
        UserCommand::Create { name, roles } => create(client, &name, roles).await,
        UserCommand::SetPassword { name } => set_password(client, &name).await,
        UserCommand::Delete { name } => delete(client, &name).await,
        UserCommand::List { json } => list(client, json).await,
    }
}

fn new_password() -> Result<String, Failure> {
    std::env::var(PASSWORD_VARIABLE)
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Failure::usage(format!("set {PASSWORD_VARIABLE} to the user's password")))
}

fn role_set(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

async fn create(client: &Client, username: &str, roles: Vec<String>) -> Result<Outcome, Failure> {
    let path = format!("/api/users/{username}");
    let wanted: BTreeSet<String> = roles.into_iter().collect();
    match client.find(&path).await? {
        None => {
            let body = json!({"username": username, "password": new_password()?, "roles": wanted});
            client
                .expect(Method::POST, "/api/users", Some(body))
                .await?;
            Ok(Outcome::changed(format!("user {username} created")))
        }
        Some(user) if role_set(&user["roles"]) == wanted => Ok(Outcome::ok(format!(
            "user {username} exists with these roles"
        ))),
        Some(_) => {
            client
                .expect(Method::PUT, &path, Some(json!({"roles": wanted})))
                .await?;
            Ok(Outcome::changed(format!("user {username} given the roles")))
        }
    }
}

async fn set_password(client: &Client, username: &str) -> Result<Outcome, Failure> {
    let body = json!({"password": new_password()?});
    client
        .expect(Method::PUT, &format!("/api/users/{username}"), Some(body))
        .await?;
    // Whether it equals the old one cannot be known (only a hash is kept): always a change.
    Ok(Outcome::changed(format!("password of {username} set")))
}

async fn delete(client: &Client, username: &str) -> Result<Outcome, Failure> {
    let path = format!("/api/users/{username}");
    if client.find(&path).await?.is_none() {
        return Ok(Outcome::ok(format!("user {username} does not exist")));
    }
    client.expect(Method::DELETE, &path, None).await?;
    Ok(Outcome::changed(format!("user {username} deleted")))
}

async fn list(client: &Client, as_json: bool) -> Result<Outcome, Failure> {
    let users = client.expect(Method::GET, "/api/users", None).await?;
    if as_json {
        return Ok(Outcome::output(
            serde_json::to_string_pretty(&users).unwrap_or_else(|_| users.to_string()),
        ));
    }
    let rows: Vec<[String; 3]> = users
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            [
                u["username"].as_str().unwrap_or_default().to_string(),
                role_set(&u["roles"])
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(","),
                u["serviceId"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    Ok(Outcome::output(table(["USER", "ROLES", "SERVICE"], &rows)))
}
