//! `ironbridge service ...` and `ironbridge user ...` against a running `ironbridge run`, as a
//! deployment pipeline uses them: what they print, and exit codes that say `ok` (nothing to do)
//! or `changed` apart from failures.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const ADMIN_PASSWORD: &str = "cli-test-admin-password";

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../commissioning-examples")
        .join(name)
}

struct Gateway {
    child: Child,
    url: String,
    /// With `start_with_tls`: the HTTPS base URL.
    https_url: String,
    data: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::launch(false)
    }

    /// Also HTTPS, with the self-signed certificate the gateway generates in its data folder.
    fn start_with_tls() -> Gateway {
        Gateway::launch(true)
    }

    fn launch(tls: bool) -> Gateway {
        let data = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
            .arg("run")
            .env("IRONBRIDGE_DATA_DIR", data.path())
            .env("IRONBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("IRONBRIDGE_MQTT_PORT", free_port().to_string())
            .env("IRONBRIDGE_MQTTS_PORT", free_port().to_string())
            .env("IRONBRIDGE_HTTP_PORT", http.to_string())
            .env("IRONBRIDGE_HTTPS_PORT", https.to_string())
            .env("IRONBRIDGE_TLS", if tls { "self-signed" } else { "off" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let ports: &[u16] = if tls { &[http, https] } else { &[http] };
        for &port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "the gateway never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Gateway {
            child,
            url: format!("http://127.0.0.1:{http}"),
            https_url: format!("https://localhost:{https}"),
            data,
        }
    }

    /// Runs `ironbridge <args>` with the admin's password in the environment.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[("IRONBRIDGE_PASSWORD", ADMIN_PASSWORD)])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ironbridge"));
        command
            .args(args)
            .env("IRONBRIDGE_URL", &self.url)
            .env_remove("IRONBRIDGE_PASSWORD")
            .env_remove("IRONBRIDGE_TOKEN")
            .env_remove("IRONBRIDGE_USERNAME");
        for (name, value) in env {
            command.env(name, value);
        }
        Run(command.output().unwrap())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST /api/login over a plain socket; the token.
fn login(url: &str, username: &str, password: &str) -> String {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let body = format!(r#"{{"username": "{username}", "password": "{password}"}}"#);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /api/login HTTP/1.0\r\nHost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let json = answer.split("\r\n\r\n").nth(1).unwrap();
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["token"].as_str().unwrap().to_string()
}

struct Run(Output);

impl Run {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit code and that stdout starts with `prefix`; returns stdout.
    #[track_caller]
    fn expect(&self, code: i32, prefix: &str) -> String {
        assert_eq!(
            self.code(),
            code,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        assert!(
            self.stdout().starts_with(prefix),
            "expected {prefix:?}, got {:?} (stderr {:?})",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
}

#[test]
fn service_commands_are_idempotent_and_say_what_they_did() {
    let gw = Gateway::start();
    let plc = example("modbus-plc.yml");
    let plc = plc.to_str().unwrap();
    // Nothing listens on this port: the service installs but cannot reach its PLC.
    let port = free_port().to_string();
    let param = format!("plcPort={port}");

    gw.run(&["service", "list"]).expect(0, "ID");
    gw.run(&["service", "install", plc, "-p", &param])
        .expect(0, "changed: service modbusplc installed");
    gw.run(&["service", "install", plc, "-p", &param])
        .expect(0, "ok: service modbusplc is installed as given (enabled)");
    let list = gw.run(&["service", "list"]).expect(0, "ID");
    assert!(list.contains("modbusplc  enabled"), "{list}");

    // Another parameter value reconfigures and names what restarted.
    let other = format!("plcPort={}", free_port());
    let out = gw
        .run(&["service", "install", plc, "-p", &other])
        .expect(0, "changed: service modbusplc reconfigured");
    assert!(out.contains("plcConnection"), "{out}");

    // Enabled but its PLC is unreachable: status says so and exits 4.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = gw.run(&["service", "status", "modbusplc"]);
        if status.code() == 4 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = status.expect(4, "service modbusplc: enabled (target enabled), deviated");
    assert!(text.contains("plcConnection"), "{text}");

    gw.run(&["service", "disable", "modbusplc"])
        .expect(0, "changed: service modbusplc disabled");
    gw.run(&["service", "disable", "modbusplc"])
        .expect(0, "ok: service modbusplc is already disabled");
    gw.run(&["service", "status", "modbusplc"])
        .expect(0, "service modbusplc: disabled (target disabled)");
    // Installing the same file again also restores the target state it asks for.
    gw.run(&["service", "install", plc, "-p", &other])
        .expect(0, "changed: service modbusplc enabled");
    gw.run(&["service", "enable", "modbusplc"])
        .expect(0, "ok: service modbusplc is already enabled");

    gw.run(&["service", "delete", "modbusplc"])
        .expect(0, "changed: service modbusplc deleted");
    gw.run(&["service", "delete", "modbusplc"])
        .expect(0, "ok: service modbusplc is not installed");
    let json = gw.run(&["service", "list", "--json"]).expect(0, "[]");
    assert_eq!(json.trim(), "[]");
}

#[test]
fn failures_have_their_own_exit_codes_and_reasons() {
    let gw = Gateway::start();

    // The gateway refuses an invalid file: 1, with every diagnostic and its position.
    let broken = example("broken.yml");
    let run = gw.run(&["service", "install", broken.to_str().unwrap()]);
    run.expect(1, "");
    assert!(run.stderr().contains("invalid"), "{}", run.stderr());
    assert!(run.stderr().contains("(line "), "{}", run.stderr());
    let run = gw.run(&["service", "enable", "nosuchservice"]);
    run.expect(1, "");
    assert!(run.stderr().contains("nosuchservice"), "{}", run.stderr());

    // Credentials: missing or wrong is 2 and says which variable to set.
    let run = gw.run_with(&["service", "list"], &[]);
    run.expect(2, "");
    assert!(
        run.stderr().contains("IRONBRIDGE_PASSWORD"),
        "{}",
        run.stderr()
    );
    let run = gw.run_with(&["service", "list"], &[("IRONBRIDGE_PASSWORD", "wrong")]);
    run.expect(2, "");
    assert!(run.stderr().contains("cannot log in"), "{}", run.stderr());
    let run = gw.run(&["service", "install", "/nonexistent.yml"]);
    run.expect(2, "");
    let run = gw.run(&["service", "install", "x.yml", "-p", "novalue"]);
    run.expect(2, "");

    // The container health check needs no credentials.
    let health = gw.run_with(&["health"], &[]).expect(0, "{");
    assert!(health.contains(r#""status":"ok""#), "{health}");

    // Nobody there: 3.
    let closed = format!("http://127.0.0.1:{}", free_port());
    gw.run(&["health", "--url", &closed]).expect(3, "");
    let run = gw.run(&["service", "list", "--url", &closed]);
    run.expect(3, "");
    assert!(
        run.stderr().contains("cannot reach the gateway"),
        "{}",
        run.stderr()
    );
}

#[test]
fn https_needs_the_gateways_certificate_to_be_trusted() {
    let gw = Gateway::start_with_tls();
    let certificate = gw.data.path().join("tls/tls-cert.pem");
    let list = gw.run(&[
        "service",
        "list",
        "--url",
        &gw.https_url,
        "--ca-file",
        certificate.to_str().unwrap(),
    ]);
    list.expect(0, "ID");
    // Without it the system's roots do not know the self-signed certificate.
    let untrusted = gw.run(&["service", "list", "--url", &gw.https_url]);
    untrusted.expect(3, "");
    assert!(
        untrusted.stderr().to_lowercase().contains("certificate"),
        "{}",
        untrusted.stderr()
    );
    let not_pem = gw.run(&[
        "service",
        "list",
        "--url",
        &gw.https_url,
        "--ca-file",
        "/etc/hostname",
    ]);
    not_pem.expect(2, "");
}

#[test]
fn user_commands_create_once_and_take_passwords_from_the_environment() {
    let gw = Gateway::start();
    let password = [("IRONBRIDGE_PASSWORD", ADMIN_PASSWORD)];

    // No password for the new user: refused before anything is sent.
    gw.run(&["user", "create", "operator"]).expect(2, "");
    let with_password = [
        password[0],
        ("IRONBRIDGE_USER_PASSWORD", "operator-password-1"),
    ];
    gw.run_with(&["user", "create", "operator"], &with_password)
        .expect(0, "changed: user operator created");
    gw.run_with(&["user", "create", "operator"], &with_password)
        .expect(0, "ok: user operator exists with these roles");
    gw.run(&["user", "create", "operator", "--role", "minimum-access"])
        .expect(0, "changed: user operator given the roles");
    let list = gw.run(&["user", "list"]).expect(0, "USER");
    assert!(list.contains("operator  minimum-access"), "{list}");

    // The new user logs in with the password from the environment, then with a new one.
    gw.run_with(
        &["user", "list", "--username", "operator"],
        &[("IRONBRIDGE_PASSWORD", "operator-password-1")],
    )
    .expect(1, "");
    let token_login = gw.run_with(
        &["service", "list", "--username", "operator"],
        &[("IRONBRIDGE_PASSWORD", "operator-password-1")],
    );
    // minimum-access may log in but not list services: refused (1), not a login failure (2).
    assert_ne!(token_login.code(), 2, "{}", token_login.stderr());
    gw.run_with(
        &["user", "set-password", "operator"],
        &[
            password[0],
            ("IRONBRIDGE_USER_PASSWORD", "operator-password-2"),
        ],
    )
    .expect(0, "changed: password of operator set");
    let old = gw.run_with(
        &["service", "list", "--username", "operator"],
        &[("IRONBRIDGE_PASSWORD", "operator-password-1")],
    );
    old.expect(2, "");

    // A token instead of a password, as a CI pipeline holds it.
    let token = login(&gw.url, "admin", ADMIN_PASSWORD);
    let list = gw
        .run_with(&["user", "list"], &[("IRONBRIDGE_TOKEN", &token)])
        .expect(0, "USER");
    assert!(list.contains("operator"), "{list}");

    gw.run(&["user", "delete", "operator"])
        .expect(0, "changed: user operator deleted");
    gw.run(&["user", "delete", "operator"])
        .expect(0, "ok: user operator does not exist");
}
