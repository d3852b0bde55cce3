// A commissioning file and its parameters being edited, validated by the gateway as you type:
// the editor with every diagnostic at its line, and the form of the parameters the file
// declares. Used to install a service and to reconfigure one.

import { html, useEffect, useMemo, useRef, useState } from "../vendor/vendor.js";
import { post } from "../lib/api.js";
import { debounce } from "../lib/use-resource.js";
import { YamlEditor } from "./yaml-editor.js";
import { ParameterForm, parameterValues } from "./parameter-form.js";
import { ErrorBanner } from "./ui.js";

const VALIDATE_AFTER_MS = 400;

/**
 * `file`/`values` are the caller's state; `onValidated({valid, diagnostics})` reports each
 * answer. `serviceId` validates as that service (a reconfiguration), so its own topics and
 * accounts are not taken as another's.
 */
export function ServiceFileForm({ file, setFile, values, setValues, serviceId, onValidated, extraDiagnostics, loaded = 0 }) {
  const [validation, setValidation] = useState({ diagnostics: [], parameters: [] });
  const [error, setError] = useState(null);
  const [dragging, setDragging] = useState(false);
  const [revision, setRevision] = useState(0);
  const sequence = useRef(0);
  const reported = useRef(onValidated);
  reported.current = onValidated;

  const validate = useMemo(() => debounce(async (text, params) => {
    const mine = ++sequence.current;
    try {
      const body = { commissioningFile: text, parameters: params };
      if (serviceId) body.id = serviceId;
      const answer = await post("/api/validate/service", body);
      if (mine !== sequence.current) return; // A newer edit is being checked.
      setValidation(answer);
      setError(null);
      reported.current?.(answer);
    } catch (e) {
      if (mine === sequence.current) setError(e);
    }
  }, VALIDATE_AFTER_MS), [serviceId]);

  const specs = validation.parameters ?? [];
  const sent = parameterValues(specs, values);
  const sentKey = JSON.stringify(sent);
  useEffect(() => {
    if (file.trim()) validate(file, sent);
  }, [file, sentKey]);

  const readFile = async (fileObject) => {
    if (!fileObject) return;
    setFile(await fileObject.text());
    setRevision((r) => r + 1);
  };
  const drop = (e) => {
    e.preventDefault();
    setDragging(false);
    readFile(e.dataTransfer?.files?.[0]);
  };

  const diagnostics = extraDiagnostics?.length ? extraDiagnostics : validation.diagnostics;
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  const warnings = diagnostics.length - errors;
  return html`<div class="service-file">
    <div class=${`drop-zone ${dragging ? "dragging" : ""}`}
      onDragOver=${(e) => { e.preventDefault(); setDragging(true); }}
      onDragLeave=${() => setDragging(false)} onDrop=${drop}>
      <div class="editor-toolbar">
        <label class="button">Open file…
          <input type="file" accept=".yml,.yaml,application/yaml,text/yaml" class="visually-hidden"
            aria-label="Open a commissioning file" onChange=${(e) => readFile(e.target.files[0])} />
        </label>
        <span class="muted">or drop a .yml file here, or paste into the editor</span>
        <span class="validation" role="status" aria-live="polite">
          ${!file.trim() ? "" : errors ? `${errors} error${errors > 1 ? "s" : ""}` : "valid"}
          ${warnings ? `, ${warnings} warning${warnings > 1 ? "s" : ""}` : ""}
        </span>
      </div>
      <${YamlEditor} value=${file} revision=${revision + loaded} onChange=${setFile} diagnostics=${diagnostics} />
    </div>
    <${ErrorBanner} error=${error} />
    <${ParameterForm} specs=${specs} values=${values}
      onChange=${(name, value) => setValues({ ...values, [name]: value })} />
  </div>`;
}

export { parameterValues };
