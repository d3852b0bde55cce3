// The login page: the API's user names and passwords, including the administrator's first-start
// password. Shows why the previous session ended (expired, revoked, logged out).

import { html, useState } from "../vendor/vendor.js";
import { login } from "../lib/api.js";
import { ErrorBanner, Notice } from "../components/ui.js";

export function LoginPage({ reason }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return html`<main class="login">
    <form onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">Ironbridge</h1>
      ${reason && !error && html`<${Notice}>${reason}</${Notice}>`}
      <${ErrorBanner} error=${error} />
      <div class="field">
        <label for="login-username">User name</label>
        <input id="login-username" autocomplete="username" value=${username} required autofocus
          onInput=${(e) => setUsername(e.target.value)} />
      </div>
      <div class="field">
        <label for="login-password">Password</label>
        <input id="login-password" type="password" autocomplete="current-password" value=${password} required
          onInput=${(e) => setPassword(e.target.value)} />
        <small>On first start the password of <code>admin</code> is in <code>data/initial-admin-password</code>.</small>
      </div>
      <button class="primary" type="submit" disabled=${busy}>${busy ? "Logging in…" : "Log in"}</button>
    </form>
  </main>`;
}
