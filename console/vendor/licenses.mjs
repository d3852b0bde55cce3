// Writes the licence of every npm package whose code is in the bundle (esbuild's metafile says
// which files went in) to ../web/vendor/LICENSES.txt, served and shipped beside the bundle.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const meta = JSON.parse(readFileSync("meta.json", "utf8"));
const packages = new Set();
for (const input of Object.keys(meta.inputs)) {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (match) packages.add(match[1]);
}
const sections = [...packages].sort().map((name) => {
  const dir = join("node_modules", name);
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  const text = file ? readFileSync(join(dir, file), "utf8").trim() : `License: ${manifest.license}`;
  return `${name} ${manifest.version} (${manifest.license})\n${"-".repeat(60)}\n${text}\n`;
});
writeFileSync(
  "../web/vendor/LICENSES.txt",
  "The libraries bundled in vendor.js, with their licences.\n" +
    "MQTT.js's own bundle also carries its dependencies' notices at the end of vendor.js.\n\n" +
    sections.join("\n"),
);
