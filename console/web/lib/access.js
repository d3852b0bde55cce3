// The permission model as the gateway applies it (admin/src/access.rs), used only to leave out
// what the user cannot open anyway. The gateway decides every request; this never grants.

/** Does the `pattern` (`+` one level, `#` the rest) cover `target`? */
export function covers(pattern, target) {
  const p = pattern.split("/");
  const t = target.split("/");
  for (let i = 0; ; i++) {
    if (p[i] === "#") return true;
    if (i >= p.length || i >= t.length) return p.length === t.length;
    if (p[i] === "+" ? t[i] === "#" : p[i] !== t[i]) return false;
  }
}

/** May the permissions do `operation` (`read` or `write`) in `context` on `target`? */
export function allows(permissions, context, operation, target) {
  return (permissions ?? []).some(
    (p) =>
      p.context === context &&
      (p.operation === operation || p.operation === "readWrite") &&
      covers(p.resource, target),
  );
}

/** The MQTT topic filters the user may read: what the explorer subscribes to by default. */
export function readableTopicFilters(permissions) {
  const filters = (permissions ?? [])
    .filter((p) => p.context === "mqtt" && p.operation !== "write")
    .map((p) => p.resource);
  if (filters.includes("#")) return ["#"];
  return [...new Set(filters)];
}
