// Roles: named sets of permissions given to users; built-in roles can be read, not changed.

import { html, useState } from "../vendor/vendor.js";
import { post, put } from "../lib/api.js";
import { useListEditor } from "../lib/use-list-editor.js";
import { allows } from "../lib/access.js";
import { useResource } from "../lib/use-resource.js";
import { ConfirmDialog, ErrorBanner, Field, Loading, Notice } from "../components/ui.js";
import { PermissionEditor, PermissionList } from "../components/permission-editor.js";

function RoleForm({ role, onSaved, onCancel }) {
  const [name, setName] = useState(role?.name ?? "");
  const [permissions, setPermissions] = useState(role?.permissions ?? []);
  const [error, setError] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      if (role) await put(`/api/roles/${encodeURIComponent(role.name)}`, { permissions });
      else await post("/api/roles", { name, permissions });
      onSaved(role ? `Saved ${role.name}.` : `Created ${name}.`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${save} aria-label=${role ? `Edit role ${role.name}` : "New role"}>
    <h2>${role ? `Edit role ${role.name}` : "New role"}</h2>
    ${!role && html`<${Field} label="Role name" value=${name} onInput=${setName} required />`}
    <${PermissionEditor} permissions=${permissions} onChange=${setPermissions} />
    <${ErrorBanner} error=${error} />
    <div class="actions">
      <button type="button" onClick=${onCancel}>Cancel</button>
      <button class="primary" type="submit">${role ? "Save" : "Create role"}</button>
    </div>
  </form>`;
}

export function RolesPage({ session }) {
  const roles = useResource("/api/roles");
  const { editing, setEditing, deleting, setDeleting, notice, error, setError, saved, remove } =
    useListEditor(roles, { pathOf: (r) => `/api/roles/${encodeURIComponent(r.name)}`, nameOf: (r) => r.name });
  const mayWrite = allows(session.permissions, "http", "write", "/api/roles");
  return html`<section aria-labelledby="roles-title">
    <div class="title-row">
      <h1 id="roles-title">Roles</h1>
      ${mayWrite && !editing && html`<button class="primary" onClick=${() => setEditing("new")}>New role</button>`}
    </div>
    <${ErrorBanner} error=${roles.error || error} onDismiss=${error ? () => setError(null) : undefined} />
    ${notice && html`<${Notice}>${notice}</${Notice}>`}
    ${editing && html`<${RoleForm} role=${editing === "new" ? null : editing} onSaved=${saved} onCancel=${() => setEditing(null)} />`}
    ${roles.loading ? html`<${Loading} />` : html`<table class="list">
      <thead><tr><th scope="col">Role</th><th scope="col">Permissions</th><th scope="col">Service</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${(roles.data ?? []).map((r) => html`<tr data-role=${r.name}>
        <td>${r.name}${r.builtin && html` <span class="badge neutral">built-in</span>`}</td>
        <td><${PermissionList} permissions=${r.permissions} /></td>
        <td>${r.serviceId ?? "–"}</td>
        <td class="row-actions">${r.serviceId ? html`<span class="muted">managed by its service</span>` : mayWrite && !r.builtin && html`
          <button onClick=${() => setEditing(r)} aria-label=${`Edit role ${r.name}`}>Edit</button>
          <button class="danger" onClick=${() => setDeleting(r)} aria-label=${`Delete role ${r.name}`}>Delete</button>`}</td>
      </tr>`)}</tbody>
    </table>`}
    ${deleting && html`<${ConfirmDialog} title=${`Delete role ${deleting.name}?`} danger confirmLabel="Delete"
      message=${html`<p>Users with this role lose its permissions at once.</p>`}
      onConfirm=${remove} onCancel=${() => setDeleting(null)} />`}
  </section>`;
}
