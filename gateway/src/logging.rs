//! What the log shows: our own events at the configured level, libraries' chatter only when asked
//! for. An ERROR line in the log must be something an operator has to act on.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter};

/// Libraries whose INFO lines describe their internals (the OPC UA server of `--demo` logs every
/// session and subscription); they show from DEBUG on.
const CHATTY_LIBRARIES: &[&str] = &[
    "opcua",
    "opcua_client",
    "opcua_core",
    "opcua_crypto",
    "opcua_server",
    "opcua_nodes",
    "opcua_types",
];

/// Errors async-opcua logs whenever a client has no certificate of its own, which is how a
/// connection with security `None` is meant to run: nothing is wrong. When message security
/// needs a certificate the connection makes one, and a real failure is the connection's own
/// `lastError`.
const EXPECTED_WITHOUT_CERTIFICATE: &[&str] = &[
    "Client is missing its application instance certificate",
    "Failed to read own certificate",
    "Failed to read own private key",
];

/// The filter for `level` (`RUST_LOG` wins when set): at `info` and above, the chatty libraries
/// say only warnings and errors.
pub fn env_filter(level: &str) -> EnvFilter {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return filter;
    }
    let quiet_libraries = matches!(
        level.parse::<Level>(),
        Ok(Level::INFO | Level::WARN | Level::ERROR)
    );
    let mut directives = level.to_string();
    if quiet_libraries {
        for library in CHATTY_LIBRARIES {
            directives.push_str(&format!(",{library}=warn"));
        }
    }
    EnvFilter::new(directives)
}

/// Leaves out the library errors that are expected in normal operation (see
/// [`EXPECTED_WITHOUT_CERTIFICATE`]); everything else passes.
#[derive(Debug, Clone, Copy)]
pub struct DropExpectedLibraryErrors;

impl<S> Filter<S> for DropExpectedLibraryErrors {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        !is_expected_library_error(event)
    }
}

fn is_expected_library_error(event: &Event<'_>) -> bool {
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || !meta.target().starts_with("opcua_") {
        return false;
    }
    let mut message = MessageText(String::new());
    event.record(&mut message);
    EXPECTED_WITHOUT_CERTIFICATE
        .iter()
        .any(|expected| message.0.starts_with(expected))
}

/// The `message` field of an event.
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records the message of every event that reaches it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Captured {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut message = MessageText(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }

    /// What the gateway's filters let through at `level` of what `emit` logs.
    fn logged(level: &str, emit: impl Fn()) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(env_filter(level))
            .with(captured.clone().with_filter(DropExpectedLibraryErrors));
        tracing::subscriber::with_default(subscriber, emit);
        captured.0.lock().unwrap().clone()
    }

    #[test]
    fn library_chatter_waits_for_debug() {
        let emit = || {
            tracing::info!(target: "opcua_server::session", "Session activated");
            tracing::info!(target: "gateway::supervisor", "Service enabled");
            tracing::warn!(target: "opcua_client::session", "Server closed the channel");
        };
        assert_eq!(
            logged("info", emit),
            ["Service enabled", "Server closed the channel"]
        );
        assert_eq!(logged("debug", emit).len(), 3);
    }

    /// Scenario: every OPC UA connection with security None logged two ERROR lines although
    /// nothing was wrong.
    #[test]
    fn expected_certificate_errors_of_the_opcua_client_are_left_out() {
        let emit = || {
            tracing::error!(target: "opcua_client::session::client", "Client is missing its application instance certificate and/or its private key. Encrypted endpoints will not function correctly.");
            tracing::error!(target: "opcua_core::comms::secure_channel", "Failed to read own certificate: not found. Check paths, crypto won't work");
            tracing::error!(target: "opcua_core::comms::secure_channel", "Failed to read own private key: not found. Check paths, crypto won't work");
            tracing::error!(target: "opcua_core::comms::secure_channel", "Signature verification failed");
            tracing::error!(target: "gateway::supervisor", "Client is missing its application instance certificate");
        };
        assert_eq!(
            logged("debug", emit),
            [
                "Signature verification failed",
                "Client is missing its application instance certificate"
            ],
            "only those exact library errors go; real errors and our own stay"
        );
    }
}
