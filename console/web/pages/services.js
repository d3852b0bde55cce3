// The services: state, deviation and error per service, kept current by the retained status
// messages the gateway publishes on `$SYS/ironbridge/services/<id>/status`.

import { html, useMemo } from "../vendor/vendor.js";
import { allows } from "../lib/access.js";
import { useWatch } from "../lib/live.js";
import { debounce, useResource } from "../lib/use-resource.js";
import { Badge, ErrorBanner, Loading } from "../components/ui.js";

/** Why a service is failed or deviated: its last error, or the resources not as wanted. */
function trouble(service) {
  return service.lastError ?? (service.deviations.length ? `not as wanted: ${service.deviations.join(", ")}` : null);
}

export function ServicesPage({ session }) {
  const services = useResource("/api/services", { every: 15000 });
  const refresh = useMemo(() => debounce(services.reload, 250), [services.reload]);
  useWatch(["$SYS/ironbridge/services/+/status"], refresh);
  const mayInstall = allows(session.permissions, "http", "write", "/api/services");

  return html`<section aria-labelledby="services-title">
    <div class="title-row">
      <h1 id="services-title">Services</h1>
      ${mayInstall && html`<a class="button primary" href="#/services/install">Install service</a>`}
    </div>
    <${ErrorBanner} error=${services.error} />
    ${services.loading ? html`<${Loading} />` : html`<table class="list">
      <thead><tr><th scope="col">Service</th><th scope="col">Name</th><th scope="col">Version</th>
        <th scope="col">State</th><th scope="col">Target</th></tr></thead>
      <tbody>
        ${(services.data ?? []).map((s) => html`<tr data-service=${s.id}>
          <td><a href=${`#/services/${encodeURIComponent(s.id)}`}>${s.id}</a></td>
          <td>${s.name}</td>
          <td>${s.version ?? "–"}</td>
          <td><${Badge} state=${s.state} />
            ${s.deviated && html` <${Badge} state="deviated" title="A resource is not in the state the service wants" />`}
            ${(s.state === "failed" || s.deviated) && trouble(s) && html`<div class="trouble">${trouble(s)}</div>`}</td>
          <td>${s.targetState}</td>
        </tr>`)}
        ${services.data?.length === 0 && html`<tr><td colspan="5" class="muted">No services installed yet.</td></tr>`}
      </tbody>
    </table>`}
  </section>`;
}
