// Permissions as the gateway models them: a resource (an MQTT topic filter, or an API path, both
// with `+` and `#`), an operation (read, write or both) and the context it applies in.

import { html } from "../vendor/vendor.js";
import { useFieldId } from "./ui.js";

const HINTS = {
  mqtt: "topic filter, e.g. services/demoplc/# or plant/+/temperature",
  http: "API path, e.g. /api/services/# or /data/line1/#",
};

function PermissionRow({ permission, index, onChange, onRemove }) {
  const ids = { context: useFieldId("perm-context"), resource: useFieldId("perm-resource"), operation: useFieldId("perm-op") };
  const set = (key) => (e) => onChange(index, { ...permission, [key]: e.target.value });
  return html`<li class="permission">
    <div class="field"><label for=${ids.context}>Context</label>
      <select id=${ids.context} value=${permission.context} onChange=${set("context")}>
        <option value="mqtt">mqtt (broker)</option><option value="http">http (API, /data)</option></select></div>
    <div class="field grow"><label for=${ids.resource}>Resource</label>
      <input id=${ids.resource} value=${permission.resource} required placeholder=${HINTS[permission.context]}
        onInput=${set("resource")} /></div>
    <div class="field"><label for=${ids.operation}>Operation</label>
      <select id=${ids.operation} value=${permission.operation} onChange=${set("operation")}>
        <option value="read">read</option><option value="write">write</option><option value="readWrite">read and write</option></select></div>
    <button type="button" class="link" onClick=${() => onRemove(index)}
      aria-label=${`Remove permission ${permission.resource || index + 1}`}>Remove</button>
  </li>`;
}

export function PermissionEditor({ permissions, onChange, legend = "Permissions" }) {
  const change = (index, permission) => onChange(permissions.map((p, i) => (i === index ? permission : p)));
  const remove = (index) => onChange(permissions.filter((_, i) => i !== index));
  const add = () => onChange([...permissions, { context: "mqtt", resource: "", operation: "read" }]);
  return html`<fieldset class="permissions">
    <legend>${legend}</legend>
    ${permissions.length === 0 && html`<p class="muted">None of its own.</p>`}
    <ul>${permissions.map((p, i) => html`<${PermissionRow} key=${i} permission=${p} index=${i}
      onChange=${change} onRemove=${remove} />`)}</ul>
    <button type="button" onClick=${add}>Add permission</button>
  </fieldset>`;
}

export function PermissionList({ permissions }) {
  if (!permissions?.length) return html`<span class="muted">none</span>`;
  return html`<ul class="permission-list">${permissions.map((p) => html`<li>
    <code>${p.context}</code> ${p.operation} <code>${p.resource}</code></li>`)}</ul>`;
}
