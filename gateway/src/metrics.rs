//! `GET /metrics` in the Prometheus text format: the broker, the REST API, the process, every
//! connection (state, values, errors, requests, reconnects, and for MQTT connections the
//! store-and-forward queue) and every mapping.
//! Readable without a token, as Prometheus scrapers expect; it names services, resources and
//! API routes, never payloads, parameters or credentials.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use broker::BrokerHandle;
use broker::metrics::Metrics;

use broker::bus::ForwardingStats;

use protocol_mapper::driver::TrafficStats;

use crate::supervisor::{ResourceMetrics, Supervisor};

/// Upper bounds of the API latency histogram, in seconds (a login's password hash lands in
/// the 0.1-0.5 s bucket).
const LATENCY_BUCKETS: [f64; 6] = [0.005, 0.025, 0.1, 0.5, 2.5, 10.0];

/// Everything `/metrics` reads.
#[derive(Clone)]
pub struct Sources {
    pub supervisor: Arc<Supervisor>,
    /// `None` with an external broker: its counters are that broker's business.
    pub broker: Option<BrokerHandle>,
    pub api: Arc<ApiMetrics>,
    pub started: Instant,
}

pub fn router(sources: Sources) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let sources = sources.clone();
            async move {
                let text = render(&Snapshot {
                    broker: sources
                        .broker
                        .as_ref()
                        .map(|b| BrokerCounters::read(b.metrics())),
                    api: sources.api.snapshot(),
                    process: ProcessStats::read(sources.started),
                    resources: sources.supervisor.metrics(),
                });
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
            }
        }),
    )
}

/// Requests to the REST API by method, route (the pattern, so ids do not multiply series) and
/// status, with their latency.
#[derive(Default)]
pub struct ApiMetrics {
    requests: Mutex<BTreeMap<(String, String), RouteStats>>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    /// Responses by status code.
    statuses: BTreeMap<u16, u64>,
    /// Cumulative counts per [`LATENCY_BUCKETS`] bound.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    seconds: f64,
}

impl ApiMetrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let stats = requests
            .entry((method.to_string(), route.to_string()))
            .or_default();
        *stats.statuses.entry(status).or_default() += 1;
        for (bucket, bound) in stats.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        stats.count += 1;
        stats.seconds += seconds;
    }

    fn snapshot(&self) -> BTreeMap<(String, String), RouteStats> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Middleware for the API's routes (`Router::route_layer`, so the route is known).
pub async fn track(
    State(metrics): State<Arc<ApiMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The broker's counters at one moment.
#[derive(Debug, Default, Clone, Copy)]
struct BrokerCounters {
    connections: u64,
    connections_total: u64,
    connections_refused: u64,
    messages_received: u64,
    messages_sent: u64,
    messages_internal: u64,
    bytes_received: u64,
    bytes_sent: u64,
    messages_dropped: u64,
    publishes_denied: u64,
    subscriptions_denied: u64,
    deliveries_denied: u64,
    dropped_queue_bytes: u64,
    retained_dropped: u64,
    protocol_errors: u64,
}

impl BrokerCounters {
    fn read(m: &Metrics) -> BrokerCounters {
        let get = |counter: &AtomicU64| Metrics::get(counter);
        BrokerCounters {
            connections: get(&m.connections_current),
            connections_total: get(&m.connections_total),
            connections_refused: get(&m.connections_refused),
            messages_received: get(&m.messages_received),
            messages_sent: get(&m.messages_sent),
            messages_internal: get(&m.messages_internal),
            bytes_received: get(&m.bytes_received),
            bytes_sent: get(&m.bytes_sent),
            messages_dropped: get(&m.messages_dropped),
            publishes_denied: get(&m.publishes_denied),
            subscriptions_denied: get(&m.subscriptions_denied),
            deliveries_denied: get(&m.deliveries_denied),
            dropped_queue_bytes: get(&m.messages_dropped_queue_bytes),
            retained_dropped: get(&m.retained_dropped),
            protocol_errors: get(&m.protocol_errors),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct ProcessStats {
    uptime_seconds: u64,
    /// From /proc (Linux); absent elsewhere.
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
}

impl ProcessStats {
    fn read(started: Instant) -> ProcessStats {
        // `VmRSS:   12345 kB`: in bytes whatever the page size.
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map(|kib| kib * 1024);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        ProcessStats {
            uptime_seconds: started.elapsed().as_secs(),
            resident_bytes,
            open_fds,
        }
    }
}

struct Snapshot {
    broker: Option<BrokerCounters>,
    api: BTreeMap<(String, String), RouteStats>,
    process: ProcessStats,
    resources: Vec<ResourceMetrics>,
}

/// Writes families in the exposition format: `# HELP`, `# TYPE`, then the samples.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family<V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (String, V)>,
    ) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            match labels.is_empty() {
                true => {
                    let _ = writeln!(self.out, "{name} {value}");
                }
                false => {
                    let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
                }
            }
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help, [(String::new(), value)]);
    }
}

fn render(snapshot: &Snapshot) -> String {
    let mut x = Exposition::default();
    if let Some(broker) = &snapshot.broker {
        broker_families(&mut x, broker);
    }
    api_families(&mut x, &snapshot.api);
    process_families(&mut x, &snapshot.process);
    resource_families(&mut x, &snapshot.resources);
    x.out
}

fn broker_families(x: &mut Exposition, b: &BrokerCounters) {
    x.single(
        "ironbridge_broker_connections",
        "gauge",
        "MQTT network clients connected now (TCP, TLS, WebSocket)",
        b.connections,
    );
    for (name, help, value) in [
        (
            "ironbridge_broker_connections_total",
            "MQTT connections accepted",
            b.connections_total,
        ),
        (
            "ironbridge_broker_connections_refused_total",
            "MQTT connections refused (authentication, protocol, limits)",
            b.connections_refused,
        ),
        (
            "ironbridge_broker_messages_received_total",
            "PUBLISH packets received from clients",
            b.messages_received,
        ),
        (
            "ironbridge_broker_messages_sent_total",
            "PUBLISH packets sent to subscribers",
            b.messages_sent,
        ),
        (
            "ironbridge_broker_messages_internal_total",
            "Messages the gateway's own components (device connections, mappings) published in-process",
            b.messages_internal,
        ),
        (
            "ironbridge_broker_bytes_received_total",
            "Bytes received from clients",
            b.bytes_received,
        ),
        (
            "ironbridge_broker_bytes_sent_total",
            "Bytes sent to clients",
            b.bytes_sent,
        ),
        (
            "ironbridge_broker_messages_dropped_total",
            "Deliveries dropped: a subscriber's queue was full or the message exceeded its maximum packet size",
            b.messages_dropped,
        ),
        (
            "ironbridge_broker_publishes_denied_total",
            "PUBLISH packets refused by the permissions",
            b.publishes_denied,
        ),
        (
            "ironbridge_broker_subscriptions_denied_total",
            "Subscriptions refused by the permissions",
            b.subscriptions_denied,
        ),
        (
            "ironbridge_broker_messages_dropped_queue_bytes_total",
            "Of the dropped deliveries, those refused because the session's queue held broker.max_queued_bytes",
            b.dropped_queue_bytes,
        ),
        (
            "ironbridge_broker_retained_dropped_total",
            "Retained messages not kept because the store held broker.max_retained_messages or max_retained_bytes",
            b.retained_dropped,
        ),
        (
            "ironbridge_broker_deliveries_denied_total",
            "Deliveries dropped because the subscriber may no longer read the topic",
            b.deliveries_denied,
        ),
        (
            "ironbridge_broker_protocol_errors_total",
            "Malformed packets and protocol errors that closed a connection",
            b.protocol_errors,
        ),
    ] {
        x.single(name, "counter", help, value);
    }
}

fn api_families(x: &mut Exposition, api: &BTreeMap<(String, String), RouteStats>) {
    let labels = |method: &str, route: &str| {
        format!("method=\"{}\",route=\"{}\"", escape(method), escape(route))
    };
    x.family(
        "ironbridge_http_requests_total",
        "counter",
        "REST API requests by method, route and status code",
        api.iter().flat_map(|((method, route), stats)| {
            stats.statuses.iter().map(move |(status, count)| {
                (
                    format!("{},status=\"{status}\"", labels(method, route)),
                    *count,
                )
            })
        }),
    );
    let mut histogram: Vec<(String, String)> = Vec::new();
    for ((method, route), stats) in api {
        let base = labels(method, route);
        for (bound, count) in LATENCY_BUCKETS.iter().zip(stats.buckets) {
            histogram.push((format!("{base},le=\"{bound}\""), count.to_string()));
        }
        histogram.push((format!("{base},le=\"+Inf\""), stats.count.to_string()));
    }
    let _ = writeln!(
        x.out,
        "# HELP ironbridge_http_request_duration_seconds REST API response time by method and route"
    );
    let _ = writeln!(
        x.out,
        "# TYPE ironbridge_http_request_duration_seconds histogram"
    );
    for (labels, value) in histogram {
        let _ = writeln!(
            x.out,
            "ironbridge_http_request_duration_seconds_bucket{{{labels}}} {value}"
        );
    }
    for ((method, route), stats) in api {
        let base = labels(method, route);
        let _ = writeln!(
            x.out,
            "ironbridge_http_request_duration_seconds_sum{{{base}}} {}",
            stats.seconds
        );
        let _ = writeln!(
            x.out,
            "ironbridge_http_request_duration_seconds_count{{{base}}} {}",
            stats.count
        );
    }
}

fn process_families(x: &mut Exposition, p: &ProcessStats) {
    x.single(
        "ironbridge_uptime_seconds",
        "gauge",
        "Seconds since the gateway started",
        p.uptime_seconds,
    );
    if let Some(bytes) = p.resident_bytes {
        x.single(
            "ironbridge_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the gateway process",
            bytes,
        );
    }
    if let Some(fds) = p.open_fds {
        x.single(
            "ironbridge_process_open_fds",
            "gauge",
            "Open file descriptors (sockets, files) of the gateway process",
            fds,
        );
    }
}

fn resource_families(x: &mut Exposition, resources: &[ResourceMetrics]) {
    let labelled = |r: &ResourceMetrics| {
        format!(
            "service=\"{}\",resource=\"{}\"",
            escape(&r.service),
            escape(&r.resource)
        )
    };
    let connections: Vec<_> = resources
        .iter()
        .filter_map(|r| Some((labelled(r), u64::from(r.connected?))))
        .collect();
    x.family(
        "ironbridge_connection_up",
        "gauge",
        "1 while the connection is connected",
        connections,
    );
    connection_traffic_families(x, resources, labelled);
    let forwarding: Vec<_> = resources
        .iter()
        .filter_map(|r| Some((labelled(r), r.forwarding.as_ref()?)))
        .collect();
    type Field = fn(&ForwardingStats) -> u64;
    let per_connection: [(&str, &str, &str, Field); 7] = [
        (
            "ironbridge_forward_queue_messages",
            "gauge",
            "QoS 1/2 messages in the store-and-forward queue, not yet acknowledged by the remote broker",
            |f| f.queued_messages,
        ),
        (
            "ironbridge_forward_queue_bytes",
            "gauge",
            "Bytes of topics and payloads in the store-and-forward queue",
            |f| f.queued_bytes,
        ),
        (
            "ironbridge_forward_delivered_total",
            "counter",
            "Queued messages the remote broker acknowledged",
            |f| f.delivered,
        ),
        (
            "ironbridge_forward_delivered_per_second",
            "gauge",
            "Acknowledged messages per second over the last seconds",
            |f| f.delivered_per_second,
        ),
        (
            "ironbridge_forward_sent_qos0_total",
            "counter",
            "QoS 0 messages sent to the remote broker",
            |f| f.sent_qos0,
        ),
        (
            "ironbridge_forward_received_total",
            "counter",
            "Messages from the remote broker handed to mappings",
            |f| f.received,
        ),
        (
            "ironbridge_forward_refused_total",
            "counter",
            "Forwarded messages the remote broker refused (MQTT 5 reason code)",
            |f| f.refused_by_broker,
        ),
    ];
    for (name, kind, help, field) in per_connection {
        x.family(
            name,
            kind,
            help,
            forwarding
                .iter()
                .map(|(labels, f)| (labels.clone(), field(f))),
        );
    }
    x.family(
        "ironbridge_forward_dropped_total",
        "counter",
        "Messages dropped on the way to or from the remote broker, by reason",
        forwarding.iter().flat_map(|(labels, f)| {
            [
                ("queue_full", f.dropped_queue_full),
                ("expired", f.dropped_expired),
                ("qos0_offline", f.dropped_qos0_offline),
                ("mapping_behind", f.dropped_received),
            ]
            .map(|(reason, value)| (format!("{labels},reason=\"{reason}\""), value))
        }),
    );
    x.family(
        "ironbridge_mapping_messages_total",
        "counter",
        "Messages through a mapping or endpoint rule chain, by outcome",
        resources.iter().flat_map(|r| {
            let labels = labelled(r);
            r.mapping.iter().flat_map(move |m| {
                [
                    ("received", m.received),
                    ("published", m.published),
                    ("dropped", m.dropped),
                ]
                .map(|(outcome, value)| (format!("{labels},outcome=\"{outcome}\""), value))
            })
        }),
    );
}

/// What every connection did, whatever its protocol.
fn connection_traffic_families(
    x: &mut Exposition,
    resources: &[ResourceMetrics],
    labelled: impl Fn(&ResourceMetrics) -> String,
) {
    let traffic: Vec<_> = resources
        .iter()
        .filter_map(|r| Some((labelled(r), r.traffic?)))
        .collect();
    type Field = fn(&TrafficStats) -> u64;
    let counters: [(&str, &str, Field); 4] = [
        (
            "ironbridge_connection_values_total",
            "Values read or received from the device and published",
            |t| t.values,
        ),
        (
            "ironbridge_connection_endpoint_errors_total",
            "Failed reads, subscriptions and values of the connection's endpoints",
            |t| t.endpoint_errors,
        ),
        (
            "ironbridge_connection_failed_attempts_total",
            "Attempts to connect that failed",
            |t| t.failed_attempts,
        ),
        (
            "ironbridge_connection_lost_total",
            "Sessions that were up and then lost",
            |t| t.sessions_lost,
        ),
    ];
    for (name, help, field) in counters {
        x.family(
            name,
            "counter",
            help,
            traffic.iter().map(|(labels, t)| (labels.clone(), field(t))),
        );
    }
    x.family(
        "ironbridge_connection_requests_total",
        "counter",
        "/req and /set messages answered, by outcome",
        traffic.iter().flat_map(|(labels, t)| {
            [
                ("ok", t.requests.saturating_sub(t.requests_failed)),
                ("error", t.requests_failed),
            ]
            .map(|(outcome, value)| (format!("{labels},outcome=\"{outcome}\""), value))
        }),
    );
    x.family(
        "ironbridge_connection_last_value_timestamp_seconds",
        "gauge",
        "When the connection last published a value (Unix time)",
        traffic.iter().filter_map(|(labels, t)| {
            let at = t.last_value_at?;
            Some((labels.clone(), at as f64 / 1000.0))
        }),
    );
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

    fn snapshot(resources: Vec<ResourceMetrics>) -> Snapshot {
        Snapshot {
            broker: Some(BrokerCounters {
                connections: 3,
                messages_received: 41,
                ..BrokerCounters::default()
            }),
            api: BTreeMap::new(),
            process: ProcessStats {
                uptime_seconds: 7,
                resident_bytes: Some(1 << 20),
                open_fds: None,
            },
            resources,
        }
    }

    #[test]
    fn renders_families_with_labels_and_reasons() {
        let text = render(&snapshot(vec![ResourceMetrics {
            service: "uplink".into(),
            resource: "cloud\"1".into(),
            connected: Some(false),
            forwarding: Some(ForwardingStats {
                queued_messages: 1500,
                dropped_queue_full: 2,
                ..ForwardingStats::default()
            }),
            traffic: Some(TrafficStats::default()),
            mapping: None,
        }]));
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
        assert!(text.contains("\nironbridge_broker_connections 3\n"));
        assert!(text.contains("\nironbridge_broker_messages_received_total 41\n"));
        assert!(text.contains("\nironbridge_process_resident_memory_bytes 1048576\n"));
        assert!(
            !text.contains("ironbridge_process_open_fds "),
            "absent, not 0"
        );
    }

    #[test]
    fn every_connection_reports_its_traffic() {
        let text = render(&snapshot(vec![ResourceMetrics {
            service: "press".into(),
            resource: "plc".into(),
            connected: Some(true),
            forwarding: None,
            traffic: Some(TrafficStats {
                values: 120,
                last_value_at: Some(1_796_544_000_250),
                endpoint_errors: 3,
                requests: 5,
                requests_failed: 2,
                failed_attempts: 4,
                sessions_lost: 1,
            }),
            mapping: None,
        }]));
        let labels = "service=\"press\",resource=\"plc\"";
        for sample in [
            format!("ironbridge_connection_values_total{{{labels}}} 120\n"),
            format!("ironbridge_connection_endpoint_errors_total{{{labels}}} 3\n"),
            format!("ironbridge_connection_failed_attempts_total{{{labels}}} 4\n"),
            format!("ironbridge_connection_lost_total{{{labels}}} 1\n"),
            format!("ironbridge_connection_requests_total{{{labels},outcome=\"ok\"}} 3\n"),
            format!("ironbridge_connection_requests_total{{{labels},outcome=\"error\"}} 2\n"),
            format!(
                "ironbridge_connection_last_value_timestamp_seconds{{{labels}}} 1796544000.25\n"
            ),
        ] {
            assert!(text.contains(&sample), "{sample} missing from\n{text}");
        }
        assert!(
            !text.contains("ironbridge_forward_queue_messages{"),
            "no store-and-forward queue outside MQTT connections"
        );
    }

    #[test]
    fn api_requests_are_counted_per_route_and_status_with_a_latency_histogram() {
        let api = ApiMetrics::default();
        api.record("GET", "/api/services/{id}", 200, 0.002);
        api.record("GET", "/api/services/{id}", 404, 0.03);
        api.record("POST", "/api/login", 401, 0.3);
        let mut s = snapshot(Vec::new());
        s.api = api.snapshot();
        let text = render(&s);
        let route = "method=\"GET\",route=\"/api/services/{id}\"";
        assert!(text.contains(&format!(
            "ironbridge_http_requests_total{{{route},status=\"404\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ironbridge_http_request_duration_seconds_bucket{{{route},le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ironbridge_http_request_duration_seconds_bucket{{{route},le=\"0.1\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "ironbridge_http_request_duration_seconds_bucket{{{route},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "ironbridge_http_request_duration_seconds_count{{{route}}} 2\n"
        )));
        let login = "method=\"POST\",route=\"/api/login\"";
        assert!(text.contains(&format!(
            "ironbridge_http_request_duration_seconds_bucket{{{login},le=\"0.1\"}} 0\n"
        )));
    }
}
