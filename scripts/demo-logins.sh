#!/usr/bin/env bash
# Demo logins for `make run`, created once: one user per role, linked to the demo Practitioners
# and Patient, and a public SMART app. Staff roles come from the Practitioners' PractitionerRoles
# (demo/hearth-demo.json; `hearth users create` adds one where it is missing). Staff accounts
# need TOTP: their enrolment QR codes,
# otpauth URIs and recovery codes go to var/demo-logins.txt (local demo data only).
set -euo pipefail
HEARTH=${HEARTH:-.venv/bin/hearth}
OUT=var/demo-logins.txt
PASSWORD=${HEARTH_DEMO_PASSWORD:-hearth-demo-password}
: > "$OUT"
chmod 600 "$OUT"
make_user() {  # name role fhirUser
  echo "== $1 ($2, $3)" >> "$OUT"
  "$HEARTH" users create "$1" --role "$2" --fhir-user "$3" --password "$PASSWORD" >> "$OUT"
}
make_user demo-doctor doctor Practitioner/demo-doctor
make_user demo-pharmacist pharmacist Practitioner/demo-pharmacist
make_user demo-cadre cadre Practitioner/demo-cadre
make_user demo-admin admin Practitioner/demo-admin
make_user demo-patient patient Patient/demo-patient-1
"$HEARTH" clients create --client-id demo-app --name "Demo SMART app" --kind public \
  --redirect-uri http://127.0.0.1:8000/callback \
  --scope "openid fhirUser launch launch/patient offline_access online_access patient/*.rs user/*.cruds" \
  >> "$OUT"
"$HEARTH" clients create --client-id demo-ops --name "Demo operator scripts" \
  --kind confidential-symmetric --scope "system/*.cruds" >> "$OUT"
