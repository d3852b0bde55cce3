// The `parameters:` a commissioning file declares, as a form: one typed field per parameter with
// its default, allowed values and bounds, as the gateway reports them from the file.

import { html } from "../vendor/vendor.js";
import { useFieldId } from "./ui.js";

/** The values to send: only those the user gave; the gateway applies the defaults. */
export function parameterValues(specs, values) {
  const out = {};
  for (const { name, schema } of specs) {
    const value = values[name];
    if (value === undefined || value === "") continue;
    if (schema.type === "number" || schema.type === "integer") out[name] = Number(value);
    else if (schema.type === "array") {
      try {
        out[name] = JSON.parse(value);
      } catch {
        out[name] = value; // The gateway says what is wrong with it.
      }
    } else out[name] = value;
  }
  return out;
}

function ParameterField({ name, schema, value, onChange }) {
  const id = useFieldId("param");
  const label = schema.title ?? name;
  const set = (v) => onChange(name, v);
  const required = schema.default === undefined;
  let input;
  if (schema.enum) {
    input = html`<select id=${id} value=${value ?? schema.default ?? ""} onChange=${(e) => set(e.target.value)}>
      ${required && html`<option value="">choose…</option>`}
      ${schema.enum.map((option) => html`<option value=${option}>${String(option)}</option>`)}
    </select>`;
  } else if (schema.type === "boolean") {
    const checked = value !== undefined ? value : schema.default === true;
    input = html`<input id=${id} type="checkbox" checked=${checked} onChange=${(e) => set(e.target.checked)} />`;
  } else if (schema.type === "number" || schema.type === "integer") {
    input = html`<input id=${id} type="number" value=${value ?? ""} placeholder=${schema.default ?? ""}
      min=${schema.minimum} max=${schema.maximum} step=${schema.type === "integer" ? 1 : "any"}
      required=${required} onInput=${(e) => set(e.target.value)} />`;
  } else if (schema.type === "array") {
    input = html`<textarea id=${id} rows="2" placeholder=${JSON.stringify(schema.default ?? [])}
      onInput=${(e) => set(e.target.value)}>${value ?? ""}</textarea>`;
  } else {
    input = html`<input id=${id} type=${schema.format === "password" ? "password" : "text"}
      value=${value ?? ""} placeholder=${schema.default ?? ""} required=${required}
      minlength=${schema.minLength} maxlength=${schema.maxLength} pattern=${schema.pattern}
      autocomplete="off" onInput=${(e) => set(e.target.value)} />`;
  }
  const bounds = [
    schema.minimum !== undefined && `≥ ${schema.minimum}`,
    schema.maximum !== undefined && `≤ ${schema.maximum}`,
    schema.default !== undefined && `default ${JSON.stringify(schema.default)}`,
    required && "required",
  ].filter(Boolean).join(", ");
  return html`<div class="field">
    <label for=${id}>${label} <span class="muted">(${schema.type})</span></label>
    ${input}
    <small>${[schema.description, bounds].filter(Boolean).join(" · ")}</small>
  </div>`;
}

export function ParameterForm({ specs, values, onChange }) {
  if (!specs.length) return html`<p class="muted">This file declares no parameters.</p>`;
  return html`<fieldset class="parameters">
    <legend>Parameters</legend>
    ${specs.map((spec) => html`<${ParameterField} key=${spec.name} ...${spec}
      value=${values[spec.name]} onChange=${onChange} />`)}
  </fieldset>`;
}
