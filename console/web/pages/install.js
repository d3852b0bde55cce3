// Installing a service: a file dropped, opened, pasted or discovered from an OPC UA server, its
// parameters, validated live; the install goes through `POST /api/services` and then shows the
// new service.

import { html, useState } from "../vendor/vendor.js";
import { post } from "../lib/api.js";
import { allows } from "../lib/access.js";
import { OpcuaDiscovery } from "../components/opcua-discovery.js";
import { ServiceFileForm, parameterValues } from "../components/service-file-form.js";
import { ErrorBanner, useFieldId } from "../components/ui.js";

export function InstallPage({ session }) {
  const [file, setFile] = useState("");
  // Bumped when a discovered file replaces what the editor holds.
  const [loaded, setLoaded] = useState(0);
  const mayDiscover = allows(session.permissions, "http", "write", "/api/discover/opcua");
  const [values, setValues] = useState({});
  const [validation, setValidation] = useState(null);
  const [serviceId, setServiceId] = useState("");
  const [enable, setEnable] = useState(true);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const idField = useFieldId("service-id");
  const enableField = useFieldId("enable");

  const install = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        commissioningFile: file,
        parameters: parameterValues(validation?.parameters ?? [], values),
        targetState: enable ? "enabled" : "disabled",
      };
      if (serviceId.trim()) body.id = serviceId.trim();
      const installed = await post("/api/services", body);
      location.hash = `#/services/${encodeURIComponent(installed.id)}`;
    } catch (err) {
      setError(err);
      if (err.details?.diagnostics) setValidation({ ...validation, diagnostics: err.details.diagnostics });
      setBusy(false);
    }
  };

  const invalid = !file.trim() || validation?.valid === false;
  return html`<section aria-labelledby="install-title">
    <div class="title-row">
      <h1 id="install-title">Install a service</h1>
      <a href="#/services">Back to services</a>
    </div>
    ${mayDiscover && html`<${OpcuaDiscovery} onFound=${(yaml) => { setFile(yaml); setLoaded((n) => n + 1); }} />`}
    <form onSubmit=${install}>
      <${ServiceFileForm} file=${file} setFile=${setFile} values=${values} setValues=${setValues}
        onValidated=${setValidation} loaded=${loaded} />
      <div class="form-row">
        <div class="field">
          <label for=${idField}>Service id <span class="muted">(optional)</span></label>
          <input id=${idField} value=${serviceId} placeholder="derived from metadata.name"
            onInput=${(e) => setServiceId(e.target.value)} />
        </div>
        <div class="field checkbox">
          <input id=${enableField} type="checkbox" checked=${enable} onChange=${(e) => setEnable(e.target.checked)} />
          <label for=${enableField}>Enable after installing</label>
        </div>
      </div>
      <${ErrorBanner} error=${error} />
      <button class="primary" type="submit" disabled=${busy || invalid}>
        ${busy ? "Installing…" : "Install"}</button>
    </form>
  </section>`;
}
