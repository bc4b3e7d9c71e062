#!/usr/bin/env bash
# Runs before `npm test`: makes sure what the suite needs beyond `npm ci` is on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

node -e 'const [a,b,c]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&(b<18||(b===18&&c<1)))) { console.error("Node >= 20.18.1 is required, found "+process.version); process.exit(1) }'

# npm blocks dependency install scripts unless package.json allows them (allowScripts); the claude
# CLI's postinstall links its native binary. Rebuild it if the install skipped that step.
if ! node_modules/.bin/claude --version >/dev/null 2>&1; then
  echo "test-setup: claude CLI not runnable, rebuilding it" >&2
  npm rebuild @anthropic-ai/claude-code esbuild
  node_modules/.bin/claude --version >/dev/null
fi

# The PostgreSQL store's tests (test/store/postgres-*, replicas, store-copy) start a throwaway
# server with initdb/pg_ctl (test/helpers/postgres.ts); as root they run it as the package's
# `postgres` user. Debian keeps the binaries in /usr/lib/postgresql/<version>/bin.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  echo "test-setup: installing postgresql from Debian" >&2
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# The extension's end-to-end test (test/e2e/) drives code-server through Debian's Chromium.
bash scripts/e2e-setup.sh
