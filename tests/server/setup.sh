#!/usr/bin/env bash
# Prepares DIR to run the server tests: copies the test files there and
# installs the pinned `openai` package with `npm ci` (from package-lock.json;
# skipped when DIR already holds the same lock file's install).
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
dir="$1"
mkdir -p "$dir"
cp "$src"/package.json "$src"/package-lock.json "$src"/*.mjs "$dir"/
if [ -f "$dir/node_modules/.installed-lock" ] && cmp -s "$src/package-lock.json" "$dir/node_modules/.installed-lock"; then
  exit 0
fi
cd "$dir"
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.installed-lock
