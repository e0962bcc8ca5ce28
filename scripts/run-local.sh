#!/usr/bin/env bash
# `make run`: a seeded local Strapi 5 on 127.0.0.1:1337 and bffproxy in front of it, as deploy/ runs
# it: the shipped nginx site on 127.0.0.1:8080, the API (gunicorn, gthread) on 127.0.0.1:8090 and the
# events app (gunicorn, gevent) on 127.0.0.1:8091. Ctrl-C stops bffproxy and nginx; Strapi keeps
# running (`bash strapi/strapi-stop.sh` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
export STRAPI_PORT="${STRAPI_PORT:-1337}" BFF_PORT="${BFF_PORT:-8080}"
API_PORT="${API_PORT:-8090}" EVENTS_PORT="${EVENTS_PORT:-8091}"
export WEBHOOK_URL="${WEBHOOK_URL:-http://127.0.0.1:$BFF_PORT/webhooks/strapi}"
bash strapi/strapi-start.sh > /dev/null
# shellcheck disable=SC1090
source "${XDG_CACHE_HOME:-$HOME/.cache}/bffproxy/strapi-app/run/$STRAPI_PORT/env"

export BFFPROXY_STRAPI_URL="${BFFPROXY_STRAPI_URL:-$STRAPI_URL}"
export BFFPROXY_STRAPI_API_TOKEN="${BFFPROXY_STRAPI_API_TOKEN:-$STRAPI_API_TOKEN}"
export BFFPROXY_STRAPI_JWT_SECRET="${BFFPROXY_STRAPI_JWT_SECRET:-$STRAPI_JWT_SECRET}"
export BFFPROXY_WEBHOOK_SECRET="${BFFPROXY_WEBHOOK_SECRET:-$STRAPI_WEBHOOK_SECRET}"
export BFFPROXY_ADMIN_TOKEN="${BFFPROXY_ADMIN_TOKEN:-dev-admin-token}"
export BFFPROXY_COLLECTIONS="${BFFPROXY_COLLECTIONS:-articles,categories}"
export BFFPROXY_RELATIONS__articles="${BFFPROXY_RELATIONS__articles:-categories}"
export BFFPROXY_POLICIES__articles="${BFFPROXY_POLICIES__articles:-read=public,drafts=editor,write=editor}"
export BFFPROXY_STRAPI_ADMIN_EMAIL="${BFFPROXY_STRAPI_ADMIN_EMAIL:-admin@example.com}"
export BFFPROXY_STRAPI_ADMIN_PASSWORD="${BFFPROXY_STRAPI_ADMIN_PASSWORD:-Admin-Passw0rd!}"
export BFFPROXY_CACHE_DIR="${BFFPROXY_CACHE_DIR:-$PWD/var/cache}"
export BFFPROXY_TRUSTED_PROXIES="${BFFPROXY_TRUSTED_PROXIES:-1}"  # nginx is the one proxy in front
mkdir -p "$BFFPROXY_CACHE_DIR"
B="http://127.0.0.1:$BFF_PORT"
cat <<MSG

  Strapi 5   $STRAPI_URL   (seeded: 30 published + 6 draft articles, 4 categories)
  bffproxy   $B

  Try:
    curl -gi '$B/api/articles?pagination[pageSize]=5&fields[0]=title'      # run twice: X-Cache MISS, then HIT
    curl -gi '$B/api/articles?populate=category&sort=title:desc'
    curl -gi '$B/api/categories'
    curl -gi '$B/api/articles?status=draft'                                # 400: drafts are not public
    curl -gi '$B/readyz'
    curl -N '$B/api/events?collections=articles'                            # live events (SSE); edit an article in Strapi
    open $B/events/demo                                                     # the same, as a page that updates itself
    # sign in as the seeded editor and publish through bffproxy (validated, idempotent, audited):
    T=\$(curl -s $B/api/auth/local -H 'Content-Type: application/json' \\
        -d '{"identifier":"editor","password":"Editor-Passw0rd!"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["jwt"])')
    curl -i $B/api/articles/publish -H "Authorization: Bearer \$T" -H 'Content-Type: application/json' \\
        -H 'Idempotency-Key: demo-1' -d '{"title": "Hello from bffproxy", "body": "Written through the BFF."}'
  Users: reader / Reader-Passw0rd!  editor / Editor-Passw0rd!   Admin token for /admin/*: $BFFPROXY_ADMIN_TOKEN

MSG
if [ "${TENANTS:-1}" = 2 ]; then
  # A second tenant: its own seeded Strapi (own JWT secret, API token, webhook secret), reached as
  # Host beta.localhost or under /t/beta; the first Strapi is tenant acme (Host acme.localhost or
  # 127.0.0.1). Secrets go to the tenants file by environment variable, as in production.
  BETA_PORT="${BETA_STRAPI_PORT:-1338}"
  beta_jwt_file="${XDG_CACHE_HOME:-$HOME/.cache}/bffproxy/beta-jwt-secret"
  [ -f "$beta_jwt_file" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$beta_jwt_file"
  STRAPI_PORT="$BETA_PORT" JWT_SECRET="$(cat "$beta_jwt_file")" WEBHOOK_SECRET=beta-dev-webhook-secret \
    WEBHOOK_URL="http://127.0.0.1:$BFF_PORT/t/beta/webhooks/strapi" bash strapi/strapi-start.sh > /dev/null
  beta_env="${XDG_CACHE_HOME:-$HOME/.cache}/bffproxy/strapi-app/run/$BETA_PORT/env"
  export ACME_STRAPI_API_TOKEN="$BFFPROXY_STRAPI_API_TOKEN" ACME_STRAPI_JWT_SECRET="$BFFPROXY_STRAPI_JWT_SECRET"
  export BETA_STRAPI_API_TOKEN="$(sed -n 's/^STRAPI_API_TOKEN=//p' "$beta_env")"
  export BETA_STRAPI_JWT_SECRET="$(sed -n 's/^STRAPI_JWT_SECRET=//p' "$beta_env")"
  mkdir -p var
  cat > var/tenants.toml <<TOML
[tenants.acme]
hosts = ["acme.localhost", "127.0.0.1"]
strapi_url = "$STRAPI_URL"
strapi_api_token_env = "ACME_STRAPI_API_TOKEN"
strapi_jwt_secret_env = "ACME_STRAPI_JWT_SECRET"
webhook_secret = "$BFFPROXY_WEBHOOK_SECRET"

[tenants.beta]
hosts = ["beta.localhost"]
path_prefix = "/t/beta"
strapi_url = "http://127.0.0.1:$BETA_PORT"
strapi_api_token_env = "BETA_STRAPI_API_TOKEN"
strapi_jwt_secret_env = "BETA_STRAPI_JWT_SECRET"
webhook_secret = "beta-dev-webhook-secret"
TOML
  export BFFPROXY_TENANTS_FILE="$PWD/var/tenants.toml"
  cat <<MSG
  Two tenants (var/tenants.toml): acme = Strapi $STRAPI_URL, beta = Strapi http://127.0.0.1:$BETA_PORT
    curl -gi -H 'Host: acme.localhost' '$B/api/articles?pagination[pageSize]=2&fields[0]=title'
    curl -gi -H 'Host: beta.localhost' '$B/api/articles?pagination[pageSize]=2&fields[0]=title'
    curl -gi '$B/t/beta/api/articles?pagination[pageSize]=2&fields[0]=title'
    curl -gi -H 'Host: nobody.localhost' '$B/api/articles'                     # 404 unknown_tenant

MSG
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
.venv/bin/gunicorn -c gunicorn.events.conf.py --bind "127.0.0.1:$EVENTS_PORT" wsgi:events_app &
pids+=($!)
.venv/bin/python -m scripts.local_nginx var/nginx "$BFF_PORT" "$API_PORT" "$EVENTS_PORT" &
pids+=($!)
.venv/bin/gunicorn -c gunicorn.conf.py --bind "127.0.0.1:$API_PORT" wsgi:app &
pids+=($!)
wait -n "${pids[@]}"  # the first of the three to stop stops the others
