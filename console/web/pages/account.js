// The logged-in user's own account: permissions as the gateway resolved them, and a new
// password (which ends every other session of the user).

import { html, useState } from "../vendor/vendor.js";
import { logout, post } from "../lib/api.js";
import { useResource } from "../lib/use-resource.js";
import { ErrorBanner, Field, Loading } from "../components/ui.js";
import { PermissionList } from "../components/permission-editor.js";

export function AccountPage() {
  const me = useResource("/api/permissions");
  const [oldPassword, setOldPassword] = useState("");
  const [newPassword, setNewPassword] = useState("");
  const [error, setError] = useState(null);
  const change = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await post("/api/users/change-password", { oldPassword, newPassword });
      // The gateway ended the user's tokens; log in again with the new password.
      await logout("Your password was changed; log in with the new one.");
    } catch (err) {
      setError(err);
    }
  };
  return html`<section aria-labelledby="account-title">
    <div class="title-row"><h1 id="account-title">Your account</h1></div>
    <${ErrorBanner} error=${me.error} />
    ${me.loading ? html`<${Loading} />` : me.data && html`<div class="card">
      <p><strong>${me.data.username}</strong> · roles: ${me.data.roles.join(", ") || "none"}</p>
      <h2>What you may do</h2>
      <${PermissionList} permissions=${me.data.permissions} />
    </div>`}
    <form class="card" onSubmit=${change} aria-label="Change your password">
      <h2>Change your password</h2>
      <${Field} label="Current password" type="password" value=${oldPassword} onInput=${setOldPassword} required autocomplete="current-password" />
      <${Field} label="New password" type="password" value=${newPassword} onInput=${setNewPassword} required autocomplete="new-password" />
      <${ErrorBanner} error=${error} />
      <button class="primary" type="submit">Change password</button>
    </form>
  </section>`;
}
