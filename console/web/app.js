// The console's shell: the session (login page until there is one), the navigation the user's
// permissions allow, and the page the location's hash names (`#/services/demoplc`).

import { html, render, useEffect, useState } from "./vendor/vendor.js";
import { currentSession, endSession, logout, onSessionChange } from "./lib/api.js";
import { allows } from "./lib/access.js";
import { live } from "./lib/live.js";
import { Badge } from "./components/ui.js";
import { LoginPage } from "./pages/login.js";
import { ServicesPage } from "./pages/services.js";
import { InstallPage } from "./pages/install.js";
import { ServicePage } from "./pages/service.js";
import { ExplorerPage } from "./pages/explorer.js";
import { UsersPage } from "./pages/users.js";
import { RolesPage } from "./pages/roles.js";
import { SystemPage } from "./pages/system.js";
import { AccountPage } from "./pages/account.js";

/** The pages in the navigation, each shown when the user may read the route it lists. */
const PAGES = [
  { path: "services", label: "Services", api: "/api/services" },
  { path: "explorer", label: "Explorer", api: null },
  { path: "users", label: "Users", api: "/api/users" },
  { path: "roles", label: "Roles", api: "/api/roles" },
  { path: "system", label: "System", api: "/api/system/info" },
];

function mayOpen(session, page) {
  return page.api === null || allows(session.permissions, "http", "read", page.api);
}

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
}

function useSession() {
  const [state, setState] = useState({ session: currentSession(), reason: null });
  useEffect(() => onSessionChange((session, reason) => setState({ session, reason })), []);
  // The token's end is known: end the session then, rather than at the next failing request.
  useEffect(() => {
    if (!state.session) return;
    const left = state.session.expiresAt * 1000 - Date.now();
    const timer = setTimeout(() => endSession("Your session expired; log in again."), Math.max(left, 0));
    return () => clearTimeout(timer);
  }, [state.session]);
  return state;
}

function LiveIndicator() {
  const [status, setStatus] = useState({ state: live.state, error: live.error });
  useEffect(() => live.onState(setStatus), []);
  const label = { connected: "live", connecting: "connecting", offline: "offline" }[status.state];
  return html`<span class="live" title=${status.error ?? "MQTT over WebSocket"}>
    <${Badge} state=${label === "live" ? "connected" : label} /></span>`;
}

function Page({ route, session }) {
  const [first, second] = route;
  switch (first) {
    case "services":
      if (second === "install") return html`<${InstallPage} session=${session} />`;
      if (second) return html`<${ServicePage} id=${second} session=${session} />`;
      return html`<${ServicesPage} session=${session} />`;
    case "explorer":
      return html`<${ExplorerPage} session=${session} />`;
    case "users":
      return html`<${UsersPage} session=${session} />`;
    case "roles":
      return html`<${RolesPage} session=${session} />`;
    case "system":
      return html`<${SystemPage} session=${session} />`;
    case "account":
      return html`<${AccountPage} session=${session} />`;
    default:
      return null;
  }
}

function App() {
  const { session, reason } = useSession();
  const route = useHash();
  if (!session) return html`<${LoginPage} reason=${reason} />`;
  const pages = PAGES.filter((page) => mayOpen(session, page));
  const current = pages.find((page) => page.path === route[0]);
  if (!current && route[0] !== "account") {
    // An unknown or forbidden page: the first one this user may open.
    location.replace(`#/${pages[0]?.path ?? "explorer"}`);
    return null;
  }
  return html`<div class="shell">
    <header>
      <a class="brand" href="#/services">Ironbridge</a>
      <nav aria-label="Main">
        ${pages.map((page) => html`<a href=${`#/${page.path}`}
          aria-current=${page === current ? "page" : undefined}>${page.label}</a>`)}
      </nav>
      <div class="user">
        <${LiveIndicator} />
        <a href="#/account" aria-current=${route[0] === "account" ? "page" : undefined}
          title="Your account and password">${session.username}</a>
        <button onClick=${() => logout("You logged out.")}>Log out</button>
      </div>
    </header>
    <main id="main"><${Page} route=${route} session=${session} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
