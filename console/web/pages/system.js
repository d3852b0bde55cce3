// The gateway itself: health per part, version and uptime, and the broker's, forwarding's and
// process's counters from `/metrics` (with rates between two refreshes).

import { html, useEffect, useRef, useState } from "../vendor/vendor.js";
import { useResource } from "../lib/use-resource.js";
import { bytes, count, duration } from "../lib/format.js";
import { Badge, ErrorBanner, Loading } from "../components/ui.js";

const REFRESH_MS = 5000;

/** Prometheus text to `{name: sum over its series}`. */
export function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (Number.isFinite(value)) sums[match[1]] = (sums[match[1]] ?? 0) + value;
  }
  return sums;
}

function useMetrics() {
  const [state, setState] = useState({ now: null, rates: {}, error: null });
  const previous = useRef(null);
  useEffect(() => {
    let stopped = false;
    const load = async () => {
      try {
        const response = await fetch("/metrics");
        if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
        const now = { at: Date.now(), values: parseMetrics(await response.text()) };
        const rates = {};
        if (previous.current) {
          const seconds = (now.at - previous.current.at) / 1000;
          for (const [name, value] of Object.entries(now.values)) {
            const before = previous.current.values[name];
            if (name.endsWith("_total") && before !== undefined && seconds > 0) {
              rates[name] = Math.max(0, (value - before) / seconds);
            }
          }
        }
        previous.current = now;
        if (!stopped) setState({ now: now.values, rates, error: null });
      } catch (error) {
        if (!stopped) setState((s) => ({ ...s, error }));
      }
    };
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => { stopped = true; clearInterval(timer); };
  }, []);
  return state;
}

function HealthPart({ name, value }) {
  const status = typeof value === "string" ? value : value?.status ?? "info";
  const detail = typeof value === "object" && value ? Object.entries(value).filter(([k]) => k !== "status") : [];
  return html`<div class="card health-part" data-part=${name}>
    <h3>${name} <${Badge} state=${status} /></h3>
    ${detail.length > 0 && html`<dl class="metrics">${detail.map(([k, v]) => html`<div>
      <dt>${k}</dt><dd>${Array.isArray(v) ? v.join(", ") || "none" : typeof v === "object" ? JSON.stringify(v) : String(v)}</dd></div>`)}</dl>`}
  </div>`;
}

function Counter({ label, value, rate, format = count }) {
  return html`<div><dt>${label}</dt><dd>${value === undefined ? "–" : format(value)}
    ${rate !== undefined && html` <span class="muted">(${rate.toFixed(1)}/s)</span>`}</dd></div>`;
}

export function SystemPage() {
  const info = useResource("/api/system/info", { every: REFRESH_MS });
  const health = useResource("/api/system/health", { every: REFRESH_MS });
  const metrics = useMetrics();
  const m = metrics.now ?? {};
  const r = metrics.rates;
  // 503 carries the health answer too: a degraded gateway still shows its parts.
  const healthData = health.data ?? health.error?.body ?? null;
  return html`<section aria-labelledby="system-title">
    <div class="title-row">
      <h1 id="system-title">System</h1>
      <a href="/api/openapi.json" target="_blank" rel="noopener">REST API description (OpenAPI)</a>
    </div>
    <${ErrorBanner} error=${info.error} />
    ${info.data ? html`<dl class="facts">
      <div><dt>Product</dt><dd>${info.data.name}</dd></div>
      <div><dt>Version</dt><dd>${info.data.version}</dd></div>
      <div><dt>Uptime</dt><dd>${duration(info.data.uptimeSeconds)}</dd></div>
    </dl>` : html`<${Loading} />`}
    <h2>Health ${health.data && html`<${Badge} state=${health.data.status} />`}</h2>
    ${health.error && !health.data && html`<${ErrorBanner} error=${health.error} />`}
    <div class="cards">${Object.entries(healthData?.parts ?? {}).map(([name, value]) => html`<${HealthPart} name=${name} value=${value} />`)}</div>
    <h2>Broker</h2>
    <${ErrorBanner} error=${metrics.error} />
    <dl class="metrics wide">
      <${Counter} label="Connections" value=${m.ironbridge_broker_connections} />
      <${Counter} label="Messages from clients" value=${m.ironbridge_broker_messages_received_total} rate=${r.ironbridge_broker_messages_received_total} />
      <${Counter} label="Messages from devices and mappings" value=${m.ironbridge_broker_messages_internal_total} rate=${r.ironbridge_broker_messages_internal_total} />
      <${Counter} label="Messages sent" value=${m.ironbridge_broker_messages_sent_total} rate=${r.ironbridge_broker_messages_sent_total} />
      <${Counter} label="Bytes received" value=${m.ironbridge_broker_bytes_received_total} format=${bytes} />
      <${Counter} label="Bytes sent" value=${m.ironbridge_broker_bytes_sent_total} format=${bytes} />
      <${Counter} label="Messages dropped" value=${m.ironbridge_broker_messages_dropped_total} />
      <${Counter} label="Connections refused" value=${m.ironbridge_broker_connections_refused_total} />
      <${Counter} label="Publishes denied" value=${m.ironbridge_broker_publishes_denied_total} />
      <${Counter} label="Subscriptions denied" value=${m.ironbridge_broker_subscriptions_denied_total} />
    </dl>
    <h2>Forwarding to other brokers</h2>
    <dl class="metrics wide">
      <${Counter} label="Queued messages" value=${m.ironbridge_forward_queue_messages} />
      <${Counter} label="Queue size" value=${m.ironbridge_forward_queue_bytes} format=${bytes} />
      <${Counter} label="Delivered" value=${m.ironbridge_forward_delivered_total} rate=${r.ironbridge_forward_delivered_total} />
      <${Counter} label="Dropped" value=${m.ironbridge_forward_dropped_total} />
      <${Counter} label="Refused" value=${m.ironbridge_forward_refused_total} />
    </dl>
    <h2>Process</h2>
    <dl class="metrics wide">
      <${Counter} label="Resident memory" value=${m.ironbridge_process_resident_memory_bytes} format=${bytes} />
      <${Counter} label="Open files" value=${m.ironbridge_process_open_fds} />
      <${Counter} label="API requests" value=${m.ironbridge_http_requests_total} rate=${r.ironbridge_http_requests_total} />
    </dl>
  </section>`;
}
