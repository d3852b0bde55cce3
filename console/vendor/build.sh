#!/usr/bin/env bash
# Rebuilds ../web/vendor/vendor.js (and LICENSES.txt beside it) from the versions pinned in
# package-lock.json. Run it only to upgrade a library, and commit the result: the gateway embeds
# the committed bundle, so building or running Ironbridge needs neither Node.js nor npm.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
./node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --target=es2020 \
  --legal-comments=eof --metafile=meta.json --outfile=../web/vendor/vendor.js
node licenses.mjs
rm meta.json
