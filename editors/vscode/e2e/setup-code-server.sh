#!/usr/bin/env bash
# Installs code-server (VS Code in a browser) and playwright-core for the real-VS-Code
# end-to-end test (tests/test_editor_vscode_real.py, driver editors/vscode/e2e/drive.mjs)
# into a cache folder outside the repository:
#
#   ${HUNKWISE_CODE_SERVER_HOME:-$HOME/.cache/hunkwise/code-server}
#
# Only package registries are used (npm): code-server's own install scripts download
# ripgrep and prebuilt binaries from GitHub, so they are skipped (--ignore-scripts) and
# their work is done here: the native modules are built from source with node-gyp
# (needs g++, make and the headers of libkrb5-dev libxkbfile-dev libsecret-1-dev
# libx11-dev), ripgrep is the system's /usr/bin/rg. The browser is the system's
# Chromium. System packages are not installed here; what is missing is reported.
#
# Idempotent: a marker file records what was installed; a second run checks it and
# returns in a second or two. HUNKWISE_CODE_SERVER_FORCE=1 reinstalls.
set -euo pipefail

CODE_SERVER_VERSION="${HUNKWISE_CODE_SERVER_VERSION:-4.100.3}"
PLAYWRIGHT_VERSION="${HUNKWISE_PLAYWRIGHT_VERSION:-1.65.1}"
HOME_DIR="${HUNKWISE_CODE_SERVER_HOME:-$HOME/.cache/hunkwise/code-server}"
CHROMIUM="${HUNKWISE_CHROMIUM:-/usr/bin/chromium}"
RG="${HUNKWISE_RG:-$(command -v rg || echo /usr/bin/rg)}"
MARKER="$HOME_DIR/.installed"
WANT="code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION node-$(node --version 2>/dev/null || echo none)"

begin=$(date +%s)
say() { echo "setup-code-server: [$(( $(date +%s) - begin ))s] $*"; }

# -- what the system must provide ---------------------------------------------------
missing=()
command -v node >/dev/null || missing+=("node (Node.js 20)")
command -v npm >/dev/null || missing+=("npm")
[ -x "$CHROMIUM" ] || missing+=("$CHROMIUM (apt-get install chromium)")
[ -x "$RG" ] || missing+=("ripgrep at $RG (apt-get install ripgrep)")
if command -v node >/dev/null; then
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" = 20 ] || missing+=("Node.js 20 (code-server $CODE_SERVER_VERSION needs 20; found $(node --version))")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  say "missing system requirements:"
  for item in "${missing[@]}"; do say "  - $item"; done
  exit 1
fi

if [ "${HUNKWISE_CODE_SERVER_FORCE:-}" != 1 ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ] \
  && [ -x "$HOME_DIR/node_modules/.bin/code-server" ] && [ -d "$HOME_DIR/node_modules/playwright-core" ]; then
  say "already installed in $HOME_DIR ($WANT)"
  exit 0
fi

for tool in g++ make; do
  command -v "$tool" >/dev/null || missing+=("$tool (apt-get install build-essential)")
done
for header in krb5.h X11/extensions/XKBfile.h libsecret-1/libsecret/secret.h X11/Xlib.h; do
  [ -f "/usr/include/$header" ] || missing+=("/usr/include/$header (apt-get install libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev)")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "missing build requirements for code-server's native modules:"
  for item in "${missing[@]}"; do say "  - $item"; done
  exit 1
fi

say "installing $WANT into $HOME_DIR"
rm -f "$MARKER"
mkdir -p "$HOME_DIR"
cd "$HOME_DIR"
[ -f package.json ] || echo '{"name": "hunkwise-code-server", "private": true}' > package.json
export npm_config_yes=true npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
# Build the native modules here, never try their prebuilt downloads (GitHub: unreachable
# from CI, where the attempt only waits for a timeout), on every core.
export npm_config_build_from_source=true npm_config_jobs="$(nproc 2>/dev/null || echo 2)"
# node-gyp needs Node's headers; use the installed ones rather than downloading them.
if [ -z "$(npm config get nodedir 2>/dev/null | grep -v '^undefined$' || true)" ]; then
  prefix="$(dirname "$(dirname "$(command -v node)")")"
  if [ -f "$prefix/include/node/node.h" ]; then
    export npm_config_nodedir="$prefix"
  fi
fi

say "npm install code-server and playwright-core (scripts skipped)"
npm install --no-save --ignore-scripts --loglevel=error \
  "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION"

CS="$HOME_DIR/node_modules/code-server"
cd "$CS/lib/vscode"
say "npm install in lib/vscode (VS Code's own dependencies)"
npm install --ignore-scripts --omit=dev --loglevel=error
say "ripgrep: $RG -> @vscode/ripgrep/bin/rg"
mkdir -p node_modules/@vscode/ripgrep/bin
cp -f "$RG" node_modules/@vscode/ripgrep/bin/rg
say "building the native modules (node-gyp; this is the slow part)"
# (@vscode/sqlite3 is not among this VS Code's dependencies: npm skips the name.)
npm rebuild --loglevel=error kerberos @vscode/spdlog node-pty @parcel/watcher native-watchdog \
  @vscode/deviceid @vscode/sqlite3
# What code-server's postinstall.sh does besides installing.
ln -sfn node_modules node_modules.asar
ln -sfn code-linux.sh bin/remote-cli/code-server
ln -sfn browser-linux.sh bin/helpers/browser.sh
say "npm install in lib/vscode/extensions (the built-in extensions' shared dependencies)"
(cd extensions && npm install --ignore-scripts --omit=dev --loglevel=error)

cd "$HOME_DIR"  # argon2 is hoisted to the top node_modules
say "building argon2 (code-server's password hashing; loaded at start)"
npm rebuild --loglevel=error argon2

say "checking: code-server --version"
XDG_CONFIG_HOME="$HOME_DIR/.config" "$HOME_DIR/node_modules/.bin/code-server" --version
echo "$WANT" > "$MARKER"
say "done: $HOME_DIR/node_modules/.bin/code-server"
