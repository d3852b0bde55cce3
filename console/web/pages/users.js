// Users: list, create, edit roles and permissions, set a password, delete.

import { html, useState } from "../vendor/vendor.js";
import { post, put } from "../lib/api.js";
import { useListEditor } from "../lib/use-list-editor.js";
import { allows } from "../lib/access.js";
import { useResource } from "../lib/use-resource.js";
import { ConfirmDialog, ErrorBanner, Field, Loading, Notice } from "../components/ui.js";
import { PermissionEditor, PermissionList } from "../components/permission-editor.js";

function RolePicker({ roles, chosen, onChange }) {
  return html`<fieldset class="roles">
    <legend>Roles</legend>
    ${roles.map((role) => {
      const id = `role-${role.name}`;
      return html`<div class="field checkbox">
        <input id=${id} type="checkbox" checked=${chosen.includes(role.name)}
          onChange=${(e) => onChange(e.target.checked ? [...chosen, role.name] : chosen.filter((r) => r !== role.name))} />
        <label for=${id}>${role.name}</label>
      </div>`;
    })}
  </fieldset>`;
}

/** Create (no `user`) or edit a user. An empty password on edit keeps the current one. */
function UserForm({ user, roles, onSaved, onCancel }) {
  const [username, setUsername] = useState(user?.username ?? "");
  const [password, setPassword] = useState("");
  const [chosen, setChosen] = useState(user?.roles ?? []);
  const [permissions, setPermissions] = useState(user?.permissions ?? []);
  const [error, setError] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      if (user) {
        const body = { roles: chosen, permissions };
        if (password) body.password = password;
        await put(`/api/users/${encodeURIComponent(user.username)}`, body);
      } else {
        await post("/api/users", { username, password, roles: chosen, permissions });
      }
      onSaved(user ? `Saved ${user.username}.` : `Created ${username}.`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${save} aria-label=${user ? `Edit ${user.username}` : "New user"}>
    <h2>${user ? `Edit ${user.username}` : "New user"}</h2>
    ${!user && html`<${Field} label="User name" value=${username} onInput=${setUsername} required autocomplete="off" />`}
    <${Field} label=${user ? "New password (leave empty to keep)" : "Password"} type="password" value=${password}
      onInput=${setPassword} required=${!user} autocomplete="new-password" />
    <${RolePicker} roles=${roles} chosen=${chosen} onChange=${setChosen} />
    <${PermissionEditor} permissions=${permissions} onChange=${setPermissions} legend="Permissions of this user" />
    <${ErrorBanner} error=${error} />
    <div class="actions">
      <button type="button" onClick=${onCancel}>Cancel</button>
      <button class="primary" type="submit">${user ? "Save" : "Create user"}</button>
    </div>
  </form>`;
}

export function UsersPage({ session }) {
  const users = useResource("/api/users");
  const roles = useResource("/api/roles");
  const { editing, setEditing, deleting, setDeleting, notice, error, setError, saved, remove } =
    useListEditor(users, { pathOf: (u) => `/api/users/${encodeURIComponent(u.username)}`, nameOf: (u) => u.username });
  const mayWrite = allows(session.permissions, "http", "write", "/api/users");

  return html`<section aria-labelledby="users-title">
    <div class="title-row">
      <h1 id="users-title">Users</h1>
      ${mayWrite && !editing && html`<button class="primary" onClick=${() => setEditing("new")}>New user</button>`}
    </div>
    <${ErrorBanner} error=${users.error || error} onDismiss=${error ? () => setError(null) : undefined} />
    ${notice && html`<${Notice}>${notice}</${Notice}>`}
    ${editing && html`<${UserForm} user=${editing === "new" ? null : editing} roles=${roles.data ?? []}
      onSaved=${saved} onCancel=${() => setEditing(null)} />`}
    ${users.loading ? html`<${Loading} />` : html`<table class="list">
      <thead><tr><th scope="col">User</th><th scope="col">Roles</th><th scope="col">Own permissions</th>
        <th scope="col">Service</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${(users.data ?? []).map((u) => html`<tr data-user=${u.username}>
        <td>${u.username}</td>
        <td>${u.roles.join(", ") || html`<span class="muted">none</span>`}</td>
        <td><${PermissionList} permissions=${u.permissions} /></td>
        <td>${u.serviceId ?? "–"}</td>
        <td class="row-actions">${u.serviceId ? html`<span class="muted">managed by its service</span>` : mayWrite && html`
          <button onClick=${() => setEditing(u)} aria-label=${`Edit ${u.username}`}>Edit</button>
          <button class="danger" onClick=${() => setDeleting(u)} aria-label=${`Delete ${u.username}`}
            disabled=${u.username === session.username}>Delete</button>`}</td>
      </tr>`)}</tbody>
    </table>`}
    ${deleting && html`<${ConfirmDialog} title=${`Delete ${deleting.username}?`} danger confirmLabel="Delete"
      message=${html`<p>The user can no longer log in; open MQTT sessions of the user lose their permissions at once.</p>`}
      onConfirm=${remove} onCancel=${() => setDeleting(null)} />`}
  </section>`;
}
