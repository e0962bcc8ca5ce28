#!/usr/bin/env bash
# Install Strapi's official JavaScript client (@strapi/client, pinned by package-lock.json) for the
# end-to-end tests into $STRAPI_CLIENT_DIR, outside the clone (like the Strapi app: fresh clones on
# the same machine reuse it). Idempotent: npm runs only when package.json or the lock changed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STRAPI_CLIENT_DIR="${STRAPI_CLIENT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bffproxy/strapi-client}"
log() { printf '[strapi-client] %s\n' "$*" >&2; }

mkdir -p "$STRAPI_CLIENT_DIR"
cp "$HERE/package.json" "$HERE/package-lock.json" "$STRAPI_CLIENT_DIR/"
stamp="$STRAPI_CLIENT_DIR/node_modules/.bffproxy-stamp"
want="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "@strapi/client up to date ($STRAPI_CLIENT_DIR)"
  exit 0
fi
cd "$STRAPI_CLIENT_DIR"
# `npm ci` installs exactly the lock and fails if it disagrees with package.json.
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
log "installed @strapi/client $(node -p "require('./node_modules/@strapi/client/package.json').version") in $STRAPI_CLIENT_DIR"
