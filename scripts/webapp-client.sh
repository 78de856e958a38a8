#!/usr/bin/env bash
# Register Hearth's own web app (/app/, docs/webapp.md) as a public SMART client, once, for
# `make run`: client id hearth-webapp, redirect URI = the server's base URL + /app/.
set -euo pipefail
HEARTH=${HEARTH:-.venv/bin/hearth}
BASE=${HEARTH_BASE_URL:-http://127.0.0.1:8080}
"$HEARTH" clients create --client-id hearth-webapp --name "Hearth web app" --kind public \
  --redirect-uri "${BASE%/}/app/" --scope "openid fhirUser user/*.cruds"
