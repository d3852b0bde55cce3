// The REST API client and the login session. Every request carries the session's token; a 401
// ends the session (the shell then shows the login page with the API's reason), and every other
// error becomes an ApiError carrying the API's own message.

const STORAGE_KEY = "ironbridge.session";

/** An error answered by the API: `status`, the stable `code` and the API's `message`. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let session = readStoredSession();
const listeners = new Set();

function readStoredSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY));
    if (stored && stored.token && stored.expiresAt * 1000 > Date.now()) return stored;
  } catch {
    // A damaged entry is as good as none.
  }
  return null;
}

/** The logged-in user `{token, username, expiresAt, permissions}`, or null. */
export function currentSession() {
  return session;
}

/** Calls `listener(session, reason)` whenever the user logs in or out. */
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setSession(next, reason) {
  session = next;
  if (next) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(STORAGE_KEY);
  for (const listener of listeners) listener(next, reason);
}

export async function login(username, password) {
  const answer = await request("POST", "/api/login", { username, password }, { anonymous: true });
  setSession({
    token: answer.token,
    username,
    expiresAt: answer.expiresAt,
    permissions: answer.permissions,
  });
}

/** Revokes the token (best effort: an expired one is already useless) and forgets it. */
export async function logout(reason) {
  const token = session?.token;
  setSession(null, reason);
  if (token) {
    await fetch("/api/logout", { method: "POST", headers: { authorization: `Bearer ${token}` } })
      .catch(() => {});
  }
}

/** Ends the session from the client side, e.g. when its token expired. */
export function endSession(reason) {
  if (session) setSession(null, reason);
}

/**
 * One API call. `body` is sent as JSON unless `contentType` says otherwise; the answer is
 * parsed JSON, or null for 204.
 */
export async function request(method, path, body, { contentType, anonymous } = {}) {
  const headers = {};
  if (!anonymous && session) headers.authorization = `Bearer ${session.token}`;
  let payload;
  if (body !== undefined) {
    headers["content-type"] = contentType ?? "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, "unreachable", `The gateway cannot be reached (${e.message}).`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's page, for example; its text is the message.
  }
  if (response.ok) return json;
  const error = json?.error;
  const apiError = new ApiError(
    response.status,
    error?.code ?? "http_" + response.status,
    error?.message ?? (text.trim() || `${method} ${path} answered ${response.status}`),
    error?.details,
  );
  apiError.body = json;
  if (response.status === 401 && !anonymous) endSession(apiError.message);
  throw apiError;
}

export const get = (path) => request("GET", path);
export const post = (path, body, options) => request("POST", path, body, options);
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);
