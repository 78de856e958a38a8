#!/usr/bin/env bash
# Register Hearth's patient portal (/app/portal/, docs/webapp.md) as a public SMART client, once,
# for `make run`: client id hearth-portal, redirect URI = the server's base URL + /app/portal/.
# Patients ask for patient/*.cruds, community health workers for user/*.cruds; each login cuts
# them to the role's ceiling.
set -euo pipefail
HEARTH=${HEARTH:-.venv/bin/hearth}
BASE=${HEARTH_BASE_URL:-http://127.0.0.1:8080}
"$HEARTH" clients create --client-id hearth-portal --name "Hearth patient portal" --kind public \
  --redirect-uri "${BASE%/}/app/portal/" --scope "openid fhirUser patient/*.cruds user/*.cruds"
