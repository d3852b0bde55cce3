// A small line chart of a topic's recent numeric values (SVG, no library).

import { html } from "../vendor/vendor.js";

export function Sparkline({ points, width = 360, height = 90 }) {
  if (!points || points.length < 2) {
    return html`<p class="muted">A chart appears once two numeric values have arrived.</p>`;
  }
  const t0 = points[0][0];
  const t1 = points[points.length - 1][0];
  let min = Infinity;
  let max = -Infinity;
  for (const [, v] of points) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min || 1;
  const pad = 4;
  const x = (t) => pad + ((t - t0) / (t1 - t0 || 1)) * (width - 2 * pad);
  const y = (v) => height - pad - ((v - min) / span) * (height - 2 * pad);
  const line = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return html`<figure class="sparkline">
    <svg viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height} role="img"
      aria-label=${`history of ${points.length} values from ${min} to ${max}`}>
      <polyline points=${line} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
    <figcaption>${points.length} values · min ${min} · max ${max} · last ${Math.round((t1 - t0) / 1000)} s</figcaption>
  </figure>`;
}
