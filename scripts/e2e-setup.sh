#!/usr/bin/env bash
# Installs what the extension's end-to-end test (test/e2e/) needs, from packages only: Debian's
# Chromium, and code-server (VS Code in a browser, from npm) in the git-ignored .vscode-e2e/ (and a
# newer one in .vscode-e2e-next/, scripts/e2e-next-setup.sh).
# See docs/extension.md#testing. Idempotent: a second run checks and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

CODE_SERVER_VERSION=4.100.3
# code-server's VS Code pins @vscode/ripgrep, whose postinstall downloads this build unless cached.
RIPGREP_CACHE=vscode-ripgrep-cache-1.15.11
RIPGREP_ASSET=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz
DIR=.vscode-e2e
STAMP="$DIR/installed-$CODE_SERVER_VERSION"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ! -f "$STAMP" ] || ! compgen -G '.vscode-e2e-next/installed-*' >/dev/null; then
  # Building code-server's native modules (kerberos, node-pty) needs these; its ripgrep comes from Debian.
  command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
  dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e-setup: installing ${missing[*]} from Debian" >&2
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$STAMP" ]; then
  echo "e2e-setup: installing code-server $CODE_SERVER_VERSION into $DIR (about a minute)" >&2
  rm -rf "$DIR"
  mkdir -p "$DIR/tmp/$RIPGREP_CACHE" "$DIR/tmp/rg"
  cp "$(command -v rg)" "$DIR/tmp/rg/rg"
  tar czf "$DIR/tmp/$RIPGREP_CACHE/$RIPGREP_ASSET" -C "$DIR/tmp/rg" rg
  # Its own root, so the project's lockfile and allowScripts policy stay as they are. code-server's
  # postinstall builds VS Code's native modules (it refuses to run as root without unsafe-perm, and
  # node-pty's build fetches node-gyp through npx, hence yes).
  cat >"$DIR/package.json" <<'JSON'
{ "private": true, "description": "code-server for the extension's end-to-end test", "allowScripts": { "code-server": true } }
JSON
  (
    cd "$DIR"
    TMPDIR="$PWD/tmp" npm_config_unsafe_perm=true npm_config_yes=true \
      npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION" >install.log 2>&1 ||
      {
        tail -40 install.log >&2
        exit 1
      }
  )
  "$DIR/node_modules/.bin/code-server" --version --config "$DIR/tmp/config.yaml" >/dev/null
  rm -rf "$DIR/tmp"
  touch "$STAMP"
fi

# A newer code-server (VS Code >= 1.104) on Node 22 from npm, for test/e2e/vscode-next.e2e.test.ts.
bash scripts/e2e-next-setup.sh
