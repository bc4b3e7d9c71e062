#!/usr/bin/env bash
# Runs before `npm test`: makes sure what the suite needs beyond `npm ci` is on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<18)) { console.error("Node >= 20.18 is required, found "+process.version); process.exit(1) }'

# npm blocks dependency install scripts unless package.json allows them (allowScripts); the claude
# CLI's postinstall links its native binary. Rebuild it if the install skipped that step.
if ! node_modules/.bin/claude --version >/dev/null 2>&1; then
  echo "test-setup: claude CLI not runnable, rebuilding it" >&2
  npm rebuild @anthropic-ai/claude-code esbuild
  node_modules/.bin/claude --version >/dev/null
fi
