//! `ironbridge`: the gateway's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commissioning::model::{MessageSecurityMode, SecurityPolicy};
use gateway::cli::{self, Remote};
use gateway::{LogFormat, Settings};
use tokio_util::sync::CancellationToken;

/// jemalloc returns freed memory to the system after a short decay. With glibc's allocator every
/// thread that checked a password (argon2id: a 19 MiB buffer) kept that memory in its arena:
/// three failed logins grew the resident set from 33 MB to 72 MB for good.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ironbridge",
    version,
    about = "Industrial edge gateway: Modbus, OPC UA and MQTT",
    after_help = "`service` and `user` talk to a running gateway (IRONBRIDGE_URL, default \
http://localhost:8080) with IRONBRIDGE_TOKEN, or IRONBRIDGE_PASSWORD for IRONBRIDGE_USERNAME \
(default admin).\nExit codes: 0 done (prints `ok: ...` when nothing needed changing, `changed: \
...` otherwise), 1 refused by the gateway, 2 usage or credentials, 3 gateway unreachable, \
4 service not in its target state or deviated (`service status`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (broker and listeners). Without --config it uses embedded defaults.
    Run {
        /// YAML settings file; IRONBRIDGE_* environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log format (overrides log.format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Also run a simulated PLC (Modbus, 127.0.0.1:5020) and CNC machine (OPC UA,
        /// 127.0.0.1:4841) with demo services reading them; allows anonymous MQTT clients.
        #[arg(long)]
        demo: bool,
    },
    /// Validate commissioning files offline; prints every problem and exits non-zero on any.
    Validate {
        /// Commissioning files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Parameter value, `name=value` (repeatable); applies to every file given.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Run a protocol-mapper agent: the connections, endpoints and mappings that services place
    /// on NAME (`agentName`), next to the machines, talking to the gateway over outbound MQTT
    /// only. It logs in as user NAME (create it on the gateway first) with the password from
    /// the URL or IRONBRIDGE_AGENT_PASSWORD.
    Agent {
        /// The agent's name, as the services' `agentName` gives it.
        #[arg(long)]
        name: String,
        /// The gateway's MQTT broker: mqtt://[user[:password]@]host[:port] or mqtts://...
        #[arg(long)]
        broker: String,
        /// Where the agent keeps its work and its queue files.
        #[arg(long, default_value = "ironbridge-agent-data")]
        data_dir: PathBuf,
        /// Log format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Browse a device and print a commissioning file for what it offers (progress on stderr).
    Discover {
        #[command(subcommand)]
        protocol: DiscoverCommand,
    },
    /// Manage the services and users of a running gateway through its REST API.
    #[command(flatten)]
    Remote(Remote),
    /// Asks a running gateway's /api/system/health (for container health checks): exit 0 when
    /// healthy, 1 when degraded, 3 when it does not answer.
    Health {
        #[command(flatten)]
        target: cli::client::Target,
    },
}

#[derive(Debug, clap::Subcommand)]
enum DiscoverCommand {
    /// Browse an OPC UA server: one subscribe endpoint per variable, its data type as a comment;
    /// the file passes `ironbridge validate` and installs as it is.
    Opcua {
        /// The server: opc.tcp://HOST[:PORT][/PATH]
        url: String,
        /// The node to start at, e.g. `ns=2;s=Machine` (default: the Objects folder).
        #[arg(long)]
        root: Option<String>,
        /// Levels of objects below the root to browse.
        #[arg(long, default_value_t = 10)]
        depth: usize,
        /// Nodes to visit at most.
        #[arg(long, default_value_t = 10_000)]
        max_nodes: usize,
        /// None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss.
        #[arg(long, default_value = "None", value_parser = serde_name::<SecurityPolicy>)]
        security_policy: SecurityPolicy,
        /// None, Sign or SignAndEncrypt.
        #[arg(long, default_value = "None", value_parser = serde_name::<MessageSecurityMode>)]
        security_mode: MessageSecurityMode,
        #[arg(long)]
        username: Option<String>,
        #[arg(long, env = "IRONBRIDGE_OPCUA_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Also map every value below this topic, e.g. `acme/berlin/assembly/line1`.
        #[arg(long)]
        uns: Option<String>,
        /// Where the client certificate is kept (for message security; the server must trust
        /// it). A temporary folder when not given.
        #[arg(long)]
        pki_dir: Option<PathBuf>,
    },
}

/// A setting given by the name a commissioning file uses for it.
fn serde_name<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_format,
            demo,
        } => run(config, log_format, demo),
        Command::Validate { files, params } => validate(&files, &params),
        Command::Agent {
            name,
            broker,
            data_dir,
            log_format,
        } => agent(name, broker, data_dir, log_format),
        Command::Discover { protocol } => discover(protocol),
        Command::Remote(command) => cli::run(command),
        Command::Health { target } => cli::health(&target),
    }
}

fn discover(command: DiscoverCommand) -> ExitCode {
    let DiscoverCommand::Opcua {
        url,
        root,
        depth,
        max_nodes,
        security_policy,
        security_mode,
        username,
        password,
        uns,
        pki_dir,
    } = command;
    let request = gateway::discovery::OpcuaRequest {
        url,
        root,
        depth,
        max_nodes,
        security_policy,
        security_mode,
        username,
        password,
        uns,
    };
    let temporary = match pki_dir {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(dir) => Some(dir),
            Err(e) => {
                eprintln!("error: cannot make a folder for the client certificate: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let pki = pki_dir.unwrap_or_else(|| {
        temporary
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut last_report = std::time::Instant::now();
    let progress = |visited: usize, variables: usize| {
        if last_report.elapsed() >= std::time::Duration::from_secs(1) {
            eprintln!("browsed {visited} nodes, {variables} variables so far");
            last_report = std::time::Instant::now();
        }
    };
    match runtime.block_on(gateway::discovery::opcua(&request, pki, progress)) {
        Ok(found) => {
            print!("{}", found.yaml);
            eprintln!(
                "browsed {} nodes: {} variables",
                found.visited,
                found.variables.len()
            );
            if let Some(why) = found.truncated {
                eprintln!("note: {why}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[PathBuf], params: &[String]) -> ExitCode {
    let parameters = match cli::parse_params(params) {
        Ok(parameters) => parameters,
        Err(failure) => return failure.report(),
    };
    let mut failed = false;
    for file in files {
        let source = match std::fs::read_to_string(file) {
            Ok(source) => source,
            Err(e) => {
                println!("{}: cannot read: {e}", file.display());
                failed = true;
                continue;
            }
        };
        let result = commissioning::load_file(
            &source,
            None,
            &parameters,
            &commissioning::Environment::offline(),
        );
        match result {
            Ok(service) => {
                let warnings = match service.warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                };
                println!(
                    "{}: ok (service {}, {} resources{warnings})",
                    file.display(),
                    service.id,
                    service.resources.len()
                );
                for warning in &service.warnings {
                    println!("  {warning}");
                }
            }
            Err(diagnostics) => {
                failed = true;
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                println!("{}: {errors} problems", file.display());
                for diagnostic in diagnostics {
                    println!("  {diagnostic}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(config: Option<PathBuf>, log_format: Option<LogFormat>, demo: bool) -> ExitCode {
    let mut settings = match load_settings(config.as_deref(), log_format) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    settings.demo.enabled |= demo;
    init_logging(&settings);
    gateway::data_dir::create_files_private();
    raise_open_files_limit();
    until_signalled("Ironbridge", |stop| gateway::run(settings, stop))
}

fn agent(
    name: String,
    broker: String,
    data_dir: PathBuf,
    log_format: Option<LogFormat>,
) -> ExitCode {
    // The agent shares the gateway's environment overrides for logging and queue bounds.
    let settings = match load_settings(None, log_format) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    init_logging(&settings);
    gateway::data_dir::create_files_private();
    let options = gateway::agent::AgentOptions {
        name,
        broker,
        password: std::env::var("IRONBRIDGE_AGENT_PASSWORD").ok(),
        data_dir,
        allow_insecure_data_dir: settings.allow_insecure_data_dir,
        queue_limits: settings.forwarding.limits(),
    };
    until_signalled("The agent", |stop| gateway::agent::run(options, stop))
}

/// Settings from the file (if any) and IRONBRIDGE_* variables; exit code 2 when they are wrong.
fn load_settings(
    config: Option<&std::path::Path>,
    log_format: Option<LogFormat>,
) -> Result<Settings, ExitCode> {
    let mut settings = Settings::load(config, std::env::vars()).map_err(|e| {
        eprintln!("ironbridge: {e}");
        ExitCode::from(2)
    })?;
    if let Some(format) = log_format {
        settings.log.format = format;
    }
    Ok(settings)
}

/// Runs `main` on a multi-threaded runtime until it ends; SIGTERM or SIGINT asks it to stop.
fn until_signalled<F, Fut>(what: &str, main: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ironbridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        main(stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{what} stopped with an error");
            eprintln!("ironbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every MQTT and HTTP connection is a file descriptor, and the usual soft limit is 1,024. Like
/// Go's runtime and many servers, raise the soft limit to the hard one the system allows, so the
/// connection limits (not the descriptor limit) decide.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?limit.current, to = ?limit.maximum, "Raised the open files limit")
            }
            Err(e) => tracing::warn!(error = %e, "Cannot raise the open files limit"),
        }
    }
}

fn init_logging(settings: &Settings) {
    use gateway::logging::{DropExpectedLibraryErrors, env_filter};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let registry = tracing_subscriber::registry().with(env_filter(&settings.log.level));
    match settings.log.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_ansi(ansi)
                    .with_filter(DropExpectedLibraryErrors),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(ansi)
                    .with_filter(DropExpectedLibraryErrors),
            )
            .init(),
    }
}

async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    stop.cancel();
}
