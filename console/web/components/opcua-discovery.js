// Discovering an OPC UA server's variables: the gateway browses it (`POST /api/discover/opcua`,
// what `ironbridge discover opcua` does) and answers a commissioning file for them, which the
// install page loads into its editor to review, trim and install.

import { html, useState } from "../vendor/vendor.js";
import { post } from "../lib/api.js";
import { count } from "../lib/format.js";
import { ErrorBanner, Field, useFieldId } from "./ui.js";

const POLICIES = ["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"];
const MODES = ["None", "Sign", "SignAndEncrypt"];

function Choice({ label, value, options, onChange }) {
  const id = useFieldId("choice");
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} value=${value} onChange=${(e) => onChange(e.target.value)}>
      ${options.map((option) => html`<option value=${option}>${option}</option>`)}
    </select>
  </div>`;
}

/** Calls `onFound(yaml)` with the file the gateway wrote for the server's variables. */
export function OpcuaDiscovery({ onFound }) {
  const [url, setUrl] = useState("opc.tcp://");
  const [root, setRoot] = useState("");
  const [policy, setPolicy] = useState("None");
  const [mode, setMode] = useState("None");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [found, setFound] = useState(null);

  const browse = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setFound(null);
    const request = { url: url.trim(), securityPolicy: policy, messageSecurityMode: mode };
    if (root.trim()) request.root = root.trim();
    if (username) Object.assign(request, { username, password });
    try {
      const answer = await post("/api/discover/opcua", request);
      setFound(answer);
      onFound(answer.yaml);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  // A form of its own beside the install form: its Enter browses, it never installs.
  return html`<details class="discovery">
    <summary>Discover the variables of an OPC UA server</summary>
    <form onSubmit=${browse} aria-label="Discover an OPC UA server">
      <div class="form-row">
        <${Field} label="Server URL" value=${url} onInput=${setUrl} required
          hint="opc.tcp://host:port, as the machine's OPC UA server announces it" />
        <${Field} label="Start at node (optional)" value=${root} onInput=${setRoot}
          placeholder="the Objects folder" hint="e.g. ns=2;s=Machine" />
      </div>
      <div class="form-row">
        <${Choice} label="Security policy" value=${policy} options=${POLICIES} onChange=${setPolicy} />
        <${Choice} label="Message security" value=${mode} options=${MODES} onChange=${setMode} />
        <${Field} label="User (optional)" value=${username} onInput=${setUsername} autocomplete="off" />
        <${Field} label="Password" type="password" value=${password} onInput=${setPassword} autocomplete="off" />
      </div>
      <button type="submit" disabled=${busy}>${busy ? "Browsing…" : "Browse"}</button>
      <${ErrorBanner} error=${error} />
      ${found && html`<p class="muted" role="status">
        Found ${count(found.nodes.length)} variables (${count(found.visited)} nodes browsed);
        the file is in the editor below.${found.truncated ? ` Stopped early: ${found.truncated}.` : ""}
      </p>`}
    </form>
  </details>`;
}
