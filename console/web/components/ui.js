// Small pieces every page uses: error banners with the API's message, state badges, a
// confirmation dialog, labelled fields.

import { html, useEffect, useRef } from "../vendor/vendor.js";

/** The API's message for a failed action; nothing when there is no error. */
export function ErrorBanner({ error, onDismiss }) {
  if (!error) return null;
  const text = typeof error === "string" ? error : error.message;
  const code = typeof error === "object" && error.code ? ` (${error.code})` : "";
  return html`<div class="banner error" role="alert">
    <span>${text}${code}</span>
    ${onDismiss && html`<button class="link" onClick=${onDismiss} aria-label="Dismiss">×</button>`}
  </div>`;
}

export function Notice({ children }) {
  return html`<div class="banner notice" role="status">${children}</div>`;
}

const STATE_CLASS = {
  enabled: "good", connected: "good", ok: "good", running: "good",
  disabled: "neutral", disconnected: "neutral", elsewhere: "neutral",
  connecting: "warn", reconnecting: "warn", deviated: "warn", pending: "warn",
  failed: "bad", down: "bad", error: "bad",
};

/** A coloured badge for a state; colour is never the only sign, the word is always there. */
export function Badge({ state, title }) {
  const kind = STATE_CLASS[String(state).toLowerCase()] ?? "neutral";
  return html`<span class=${`badge ${kind}`} title=${title}>${state}</span>`;
}

/** A modal dialog asking to confirm `message`; Escape cancels, focus starts on Cancel. */
export function ConfirmDialog({ title, message, confirmLabel = "Confirm", danger, onConfirm, onCancel }) {
  const dialog = useRef(null);
  useEffect(() => {
    dialog.current?.showModal();
    dialog.current?.querySelector("button.cancel")?.focus();
  }, []);
  return html`<dialog ref=${dialog} class="confirm" aria-labelledby="confirm-title"
      onCancel=${(e) => { e.preventDefault(); onCancel(); }}>
    <h2 id="confirm-title">${title}</h2>
    <div>${message}</div>
    <div class="actions">
      <button class="cancel" onClick=${onCancel}>Cancel</button>
      <button class=${danger ? "danger" : "primary"} onClick=${onConfirm}>${confirmLabel}</button>
    </div>
  </dialog>`;
}

let fieldCounter = 0;
/** A stable id for a label's `for`. */
export function useFieldId(prefix) {
  const id = useRef(null);
  if (!id.current) id.current = `${prefix}-${++fieldCounter}`;
  return id.current;
}

/** A labelled input; extra props go to the input. */
export function Field({ label, hint, value, onInput, type = "text", ...rest }) {
  const id = useFieldId("field");
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input id=${id} type=${type} value=${value ?? ""} onInput=${(e) => onInput(e.target.value)} ...${rest} />
    ${hint && html`<small>${hint}</small>`}
  </div>`;
}

export function Loading() {
  return html`<p class="muted" role="status">Loading…</p>`;
}
