#!/usr/bin/env bash
# Refresh the board's charting library from npm: installs the version package.json pins and
# copies its browser build (and licence) into assets/, which the server embeds at compile time.
# Run after changing the pinned version; commit what it writes to assets/.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --loglevel=error
cp node_modules/chart.js/dist/chart.umd.min.js assets/chart.umd.min.js
cp node_modules/chart.js/LICENSE.md assets/chart.js-LICENSE.md
echo "assets/chart.umd.min.js is chart.js $(node -p 'require("./node_modules/chart.js/package.json").version')"
