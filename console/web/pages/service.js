// One service: its state and every resource's state, last error and counters, kept current by
// the status messages the gateway pushes (and a 2 s refresh for the counters); enable, disable,
// reconfigure with the resources that will restart shown first, delete after confirmation.

import { html, useMemo, useState } from "../vendor/vendor.js";
import { allows } from "../lib/access.js";
import { del, post, request } from "../lib/api.js";
import { useWatch } from "../lib/live.js";
import { debounce, useResource } from "../lib/use-resource.js";
import { age, bytes, count, dateTime } from "../lib/format.js";
import { Badge, ConfirmDialog, ErrorBanner, Loading, Notice } from "../components/ui.js";
import { ServiceFileForm, parameterValues } from "../components/service-file-form.js";

const METRICS_EVERY_MS = 2000;

// The gateway names counters in camelCase (`requestsFailed`, `lastValueAt`); people read words,
// times as ages and sizes in units.
function metricLabel(key) {
  return key.replace(/At$/, "").replace(/([A-Z])/g, " $1").toLowerCase();
}

function metricValue(key, value) {
  if (typeof value !== "number") return String(value ?? "–");
  if (key.endsWith("At")) return `${age(value)} ago`;
  if (/Bytes$/.test(key)) return bytes(value);
  return count(value);
}

function Metrics({ metrics }) {
  if (!metrics || typeof metrics !== "object") return html`<span class="muted">–</span>`;
  return html`<dl class="metrics">
    ${Object.entries(metrics).map(([key, value]) => html`<div data-metric=${key}>
      <dt>${metricLabel(key)}</dt><dd>${metricValue(key, value)}</dd>
    </div>`)}
  </dl>`;
}

function Resources({ resources }) {
  return html`<table class="list resources">
    <caption>Resources</caption>
    <thead><tr><th scope="col">Resource</th><th scope="col">Type</th><th scope="col">State</th>
      <th scope="col">Last error / note</th><th scope="col">Counters</th></tr></thead>
    <tbody>${resources.map((r) => html`<tr data-resource=${r.id}>
      <td><code>${r.id}</code></td>
      <td>${r.type}</td>
      <td><${Badge} state=${r.state} /></td>
      <td class="message">${r.message ?? ""}</td>
      <td><${Metrics} metrics=${r.metrics} /></td>
    </tr>`)}</tbody>
  </table>`;
}

function serviceLinks(ids) {
  return ids.map((id, i) => html`${i > 0 && ", "}<a href=${`#/services/${encodeURIComponent(id)}`}>${id}</a>`);
}

/** The services this one refers to with `!ref other::resource`, and those referring to it. */
function Dependencies({ of: deps }) {
  if (!deps || (deps.dependsOn.length === 0 && deps.dependedOnBy.length === 0)) return null;
  return html`<p class="dependencies">
    ${deps.dependsOn.length > 0 && html`<span>Depends on ${serviceLinks(deps.dependsOn)}</span>`}
    ${deps.dependedOnBy.length > 0 && html`<span>Used by ${serviceLinks(deps.dependedOnBy)}</span>`}
  </p>`;
}

function Reconfigure({ detail, onDone, onCancel }) {
  const [file, setFile] = useState(detail.commissioningFile);
  const [values, setValues] = useState(() =>
    Object.fromEntries(Object.entries(detail.parameters ?? {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v])));
  const [validation, setValidation] = useState(null);
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState(null);
  const body = () => ({
    commissioningFile: file,
    parameters: parameterValues(validation?.parameters ?? [], values),
  });
  const path = `/api/services/${encodeURIComponent(detail.id)}`;

  const check = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const answer = await request("PUT", `${path}?dryRun=true`, body());
      setPreview(answer.changedResources ?? []);
    } catch (err) {
      setError(err);
    }
  };
  const apply = async () => {
    setPreview(null);
    try {
      const answer = await request("PUT", path, body());
      onDone(answer.changedResources ?? []);
    } catch (err) {
      setError(err);
    }
  };

  return html`<form class="reconfigure" onSubmit=${check} aria-label="Reconfigure">
    <h2>Reconfigure</h2>
    <${ServiceFileForm} file=${file} setFile=${setFile} values=${values} setValues=${setValues}
      serviceId=${detail.id} onValidated=${setValidation} />
    <${ErrorBanner} error=${error} />
    <div class="actions">
      <button type="button" onClick=${onCancel}>Cancel</button>
      <button class="primary" type="submit" disabled=${validation?.valid === false}>Apply…</button>
    </div>
    ${preview && html`<${ConfirmDialog} title="Apply the new configuration?" confirmLabel="Apply"
      message=${preview.length
        ? html`<p>These resources will restart or be removed:</p><ul class="changed">${preview.map((r) => html`<li><code>${r}</code></li>`)}</ul>`
        : html`<p>No resource changes; nothing restarts.</p>`}
      onConfirm=${apply} onCancel=${() => setPreview(null)} />`}
  </form>`;
}

export function ServicePage({ id, session }) {
  const path = `/api/services/${encodeURIComponent(id)}`;
  const detail = useResource(path);
  const status = useResource(`${path}/status`, { every: METRICS_EVERY_MS });
  const dependencies = useResource(`${path}/dependencies`);
  const refresh = useMemo(() => debounce(() => { status.reload(); detail.reload(); }, 250), [status.reload, detail.reload]);
  useWatch([`$SYS/ironbridge/services/${id}/#`], refresh);
  const [editing, setEditing] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const mayWrite = allows(session.permissions, "http", "write", path);

  const operate = async (operation) => {
    setError(null);
    setNotice(null);
    try {
      await post(`${path}/operation`, { operation });
    } catch (err) {
      setError(err);
    }
    detail.reload();
    status.reload();
  };
  const remove = async () => {
    setConfirmDelete(false);
    try {
      await del(path);
      location.hash = "#/services";
    } catch (err) {
      setError(err);
    }
  };

  if (detail.loading) return html`<${Loading} />`;
  if (!detail.data) return html`<${ErrorBanner} error=${detail.error} />`;
  const service = detail.data;
  const live = status.data ?? service;
  const enabled = live.state === "enabled" || service.targetState === "enabled";
  return html`<section aria-labelledby="service-title">
    <div class="title-row">
      <h1 id="service-title">${service.name} <span class="muted">${service.id}</span></h1>
      <a href="#/services">Back to services</a>
    </div>
    <div class="summary">
      <span>State <${Badge} state=${live.state} /></span>
      ${live.deviated && html`<${Badge} state="deviated" />`}
      <span>Version ${service.version ?? "–"}</span>
      <span>Topics under <code>${service.mqttRoot}</code></span>
      <span>Updated ${dateTime(service.updatedAt)}</span>
    </div>
    <${Dependencies} of=${dependencies.data} />
    ${service.description && html`<p>${service.description}</p>`}
    ${live.lastError && html`<${ErrorBanner} error=${`Last error: ${live.lastError}`} />`}
    ${live.deviations?.length > 0 && html`<${Notice}>Deviations: ${live.deviations.join("; ")}</${Notice}>`}
    <${ErrorBanner} error=${error} onDismiss=${() => setError(null)} />
    ${notice && html`<${Notice}>${notice}</${Notice}>`}
    ${mayWrite && !editing && html`<div class="actions">
      ${enabled
        ? html`<button onClick=${() => operate("disable")}>Disable</button>`
        : html`<button class="primary" onClick=${() => operate("enable")}>Enable</button>`}
      <button onClick=${() => setEditing(true)}>Reconfigure</button>
      <button class="danger" onClick=${() => setConfirmDelete(true)}>Delete</button>
    </div>`}
    ${editing && html`<${Reconfigure} detail=${service} onCancel=${() => setEditing(false)}
      onDone=${(changed) => {
        setEditing(false);
        setNotice(changed.length ? `Reconfigured; restarted: ${changed.join(", ")}` : "Reconfigured; nothing needed a restart.");
        detail.reload();
        status.reload();
      }} />`}
    <${ErrorBanner} error=${status.error} />
    <${Resources} resources=${live.resources ?? []} />
    ${!editing && html`<details class="file">
      <summary>Commissioning file and parameters</summary>
      <pre>${service.commissioningFile}</pre>
      <pre>${JSON.stringify(service.parameters, null, 2)}</pre>
    </details>`}
    ${confirmDelete && html`<${ConfirmDialog} title=${`Delete ${service.id}?`} danger confirmLabel="Delete"
      message=${html`<p>The service is disabled and removed with its resources, users and roles. This cannot be undone.</p>
        ${dependencies.data?.dependedOnBy.length > 0 && html`<p class="warning">${dependencies.data.dependedOnBy.join(", ")}
          refer to it: the gateway refuses to delete it until they are deleted or reconfigured.</p>`}`}
      onConfirm=${remove} onCancel=${() => setConfirmDelete(false)} />`}
  </section>`;
}
