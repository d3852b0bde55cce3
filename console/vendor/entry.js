// Everything the console imports from third parties, re-exported from one module so the
// browser loads one file and the app's own modules need no import map or build step.
export { h, render, Fragment } from "preact";
export { useState, useEffect, useRef, useMemo, useCallback, useReducer } from "preact/hooks";
import htm from "htm";
import { h } from "preact";
export const html = htm.bind(h);

export { EditorView, basicSetup } from "codemirror";
export { EditorState } from "@codemirror/state";
export { keymap } from "@codemirror/view";
export { yaml } from "@codemirror/lang-yaml";
export { linter, lintGutter, setDiagnostics } from "@codemirror/lint";

export { default as mqtt } from "mqtt";
