//! `GET /metrics` in the Prometheus text format: connections (state, and for MQTT connections
//! the store-and-forward queue and its counters) and mappings. Readable without a token, as
//! Prometheus scrapers expect; it names services and resources, never payloads or credentials.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::supervisor::{ResourceMetrics, Supervisor};

pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let supervisor = supervisor.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    render(&supervisor.metrics()),
                )
                    .into_response()
            }
        }),
    )
}

/// One metric family: its name, type, help and samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, u64)>,
}

fn render(resources: &[ResourceMetrics]) -> String {
    let mut families = vec![
        family(
            "ironbridge_connection_up",
            "gauge",
            "1 while the connection is connected",
        ),
        family(
            "ironbridge_forward_queue_messages",
            "gauge",
            "QoS 1/2 messages in the store-and-forward queue, not yet acknowledged by the remote broker",
        ),
        family(
            "ironbridge_forward_queue_bytes",
            "gauge",
            "Bytes of topics and payloads in the store-and-forward queue",
        ),
        family(
            "ironbridge_forward_delivered_total",
            "counter",
            "Queued messages the remote broker acknowledged",
        ),
        family(
            "ironbridge_forward_delivered_per_second",
            "gauge",
            "Acknowledged messages per second over the last seconds",
        ),
        family(
            "ironbridge_forward_dropped_total",
            "counter",
            "Messages dropped on the way to or from the remote broker, by reason",
        ),
        family(
            "ironbridge_forward_sent_qos0_total",
            "counter",
            "QoS 0 messages sent to the remote broker",
        ),
        family(
            "ironbridge_forward_received_total",
            "counter",
            "Messages from the remote broker handed to mappings",
        ),
        family(
            "ironbridge_forward_refused_total",
            "counter",
            "Forwarded messages the remote broker refused (MQTT 5 reason code)",
        ),
        family(
            "ironbridge_mapping_messages_total",
            "counter",
            "Messages through a mapping or endpoint rule chain, by outcome",
        ),
    ];
    for resource in resources {
        let labels = format!(
            "service=\"{}\",resource=\"{}\"",
            escape(&resource.service),
            escape(&resource.resource)
        );
        if let Some(connected) = resource.connected {
            families[0]
                .samples
                .push((labels.clone(), u64::from(connected)));
        }
        if let Some(f) = &resource.forwarding {
            families[1]
                .samples
                .push((labels.clone(), f.queued_messages));
            families[2].samples.push((labels.clone(), f.queued_bytes));
            families[3].samples.push((labels.clone(), f.delivered));
            families[4]
                .samples
                .push((labels.clone(), f.delivered_per_second));
            for (reason, value) in [
                ("queue_full", f.dropped_queue_full),
                ("expired", f.dropped_expired),
                ("qos0_offline", f.dropped_qos0_offline),
                ("mapping_behind", f.dropped_received),
            ] {
                families[5]
                    .samples
                    .push((format!("{labels},reason=\"{reason}\""), value));
            }
            families[6].samples.push((labels.clone(), f.sent_qos0));
            families[7].samples.push((labels.clone(), f.received));
            families[8]
                .samples
                .push((labels.clone(), f.refused_by_broker));
        }
        if let Some(m) = &resource.mapping {
            for (outcome, value) in [
                ("received", m.received),
                ("published", m.published),
                ("dropped", m.dropped),
            ] {
                families[9]
                    .samples
                    .push((format!("{labels},outcome=\"{outcome}\""), value));
            }
        }
    }
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in f.samples {
            let _ = writeln!(out, "{}{{{labels}}} {value}", f.name);
        }
    }
    out
}

fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        samples: Vec::new(),
    }
}

/// Label values escape backslash, quote and newline (the exposition format's rules).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol_mapper::mqtt::ForwardingStats;

    #[test]
    fn renders_families_with_labels_and_reasons() {
        let text = render(&[ResourceMetrics {
            service: "uplink".into(),
            resource: "cloud\"1".into(),
            connected: Some(false),
            forwarding: Some(ForwardingStats {
                queued_messages: 1500,
                dropped_queue_full: 2,
                ..ForwardingStats::default()
            }),
            mapping: None,
        }]);
        assert!(text.contains("# TYPE ironbridge_forward_queue_messages gauge\n"));
        assert!(text.contains(
            "ironbridge_forward_queue_messages{service=\"uplink\",resource=\"cloud\\\"1\"} 1500\n"
        ));
        assert!(
            text.contains(
                "ironbridge_connection_up{service=\"uplink\",resource=\"cloud\\\"1\"} 0\n"
            )
        );
        assert!(text.contains(",reason=\"queue_full\"} 2\n"));
    }
}
