# Shared defaults for the strapi-*.sh scripts. Source it; every value can be overridden from the environment.
# shellcheck shell=bash
KIT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATE_DIR="$KIT_DIR/app"
# Outside the clone on purpose: node_modules (~720 MB) survives fresh clones on the same machine.
STRAPI_APP_DIR="${STRAPI_APP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bffproxy/strapi-app}"
STRAPI_PORT="${STRAPI_PORT:-1337}"
STRAPI_HOST="${STRAPI_HOST:-127.0.0.1}"
STRAPI_DB="${STRAPI_DB:-sqlite}"                       # sqlite | postgres
STRAPI_PGPORT="${STRAPI_PGPORT:-55432}"
STRAPI_PGDATA="${STRAPI_PGDATA:-/tmp/strapi-pgdata-$STRAPI_PGPORT}"
STRAPI_DB_NAME="${STRAPI_DB_NAME:-strapi_$STRAPI_PORT}"
STRAPI_RUN_DIR="$STRAPI_APP_DIR/run/$STRAPI_PORT"       # pid, log, seed output of this instance
STRAPI_URL="http://$STRAPI_HOST:$STRAPI_PORT"
WEBHOOK_PORT="${WEBHOOK_PORT:-8000}"
WEBHOOK_URL="${WEBHOOK_URL:-http://127.0.0.1:$WEBHOOK_PORT/webhooks/strapi}"
WEBHOOK_SECRET="${WEBHOOK_SECRET:-dev-webhook-secret}"

log() { printf '[strapi-kit] %s\n' "$*" >&2; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return 0; }; done
  return 1
}
