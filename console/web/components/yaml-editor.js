// The commissioning-file editor: CodeMirror with YAML highlighting, and the gateway's
// diagnostics marked at their lines (gutter, underline, tooltip) and listed below the editor.

import {
  EditorView, EditorState, basicSetup, yaml, lintGutter, setDiagnostics, html, useEffect, useRef,
} from "../vendor/vendor.js";

const SEVERITY = { error: "error", warning: "warning" };

/** CodeMirror's diagnostics for the gateway's (1-based line and column; none: line 1). */
function toEditorDiagnostics(doc, diagnostics) {
  return diagnostics.map((d) => {
    const line = doc.line(Math.min(Math.max(d.line ?? 1, 1), doc.lines));
    const from = Math.min(line.from + Math.max((d.column ?? 1) - 1, 0), line.to);
    return {
      from,
      to: line.to > from ? line.to : from,
      severity: SEVERITY[d.severity] ?? "error",
      message: d.path ? `${d.path}: ${d.message}` : d.message,
    };
  });
}

/**
 * `value` is the text at mount and after every change of `revision`; `onChange(text)` reports
 * every edit.
 */
export function YamlEditor({ value, revision = 0, onChange, diagnostics = [], label, readOnly = false }) {
  const host = useRef(null);
  const view = useRef(null);
  const changed = useRef(onChange);
  changed.current = onChange;
  useEffect(() => {
    const editor = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: value,
        extensions: [
          basicSetup,
          yaml(),
          lintGutter(),
          EditorState.readOnly.of(readOnly),
          EditorView.contentAttributes.of({ "aria-label": label ?? "Commissioning file" }),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) changed.current?.(update.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = editor;
    return () => editor.destroy();
  }, []);

  // The editor owns its text while the user types; `value` replaces it only when `revision`
  // changes (a file opened or dropped). Following `value` itself would fight the user: effects
  // run after paint, so `value` lags a keystroke behind, and putting it back undoes typing.
  useEffect(() => {
    const editor = view.current;
    if (editor && revision && value !== editor.state.doc.toString()) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: value } });
    }
  }, [revision]);

  useEffect(() => {
    const editor = view.current;
    if (!editor) return;
    editor.dispatch(setDiagnostics(editor.state, toEditorDiagnostics(editor.state.doc, diagnostics)));
  }, [diagnostics]);

  const goTo = (d) => {
    const editor = view.current;
    if (!editor) return;
    const [diagnostic] = toEditorDiagnostics(editor.state.doc, [d]);
    editor.dispatch({ selection: { anchor: diagnostic.from }, scrollIntoView: true });
    editor.focus();
  };

  return html`<div class="yaml-editor">
    <div class="editor-host" ref=${host}></div>
    ${diagnostics.length > 0 && html`<ul class="diagnostics" aria-label="Diagnostics">
      ${diagnostics.map((d) => html`<li class=${d.severity}>
        <button class="link" onClick=${() => goTo(d)}>
          ${d.line ? `line ${d.line}${d.column ? `:${d.column}` : ""}` : "file"}
        </button>
        <span class="severity">${d.severity}</span>
        ${d.path && html`<code>${d.path}</code>`}
        <span class="message">${d.message}</span>
      </li>`)}
    </ul>`}
  </div>`;
}
