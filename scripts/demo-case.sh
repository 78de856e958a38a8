#!/usr/bin/env bash
# Give the demo worklists some work: upload a skin photo (JPEG) for a demo patient and start a
# skin-screening case as the demo cadre, referred to demo-doctor. Then run `hearth worker --once`
# for the AI step; the doctor's review appears on demo-doctor's worklist in the web app (/app/).
#   scripts/demo-case.sh PHOTO.jpg [routine|urgent] [Patient/demo-patient-1]
set -euo pipefail
PHOTO=${1:?usage: scripts/demo-case.sh PHOTO.jpg [routine|urgent] [Patient/demo-patient-1]}
PRIORITY=${2:-routine}
PATIENT=${3:-Patient/demo-patient-1}
HEARTH=${HEARTH:-.venv/bin/hearth}
FHIR=${HEARTH_BASE_URL:-http://127.0.0.1:8080}/fhir
TOKEN=$("$HEARTH" token --client demo-ops --scope 'system/*.cruds')
post() {  # path, then the JSON body on stdin; prints the response, fails on an HTTP error
  curl -sS --fail-with-body -X POST "$FHIR/$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/fhir+json' -H 'X-Hearth-Role: cadre' \
    -H 'X-Hearth-Actor: Practitioner/demo-cadre' --data-binary @-
}
id_of() { "$(dirname "$HEARTH")/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
MEDIA=$({
  printf '{"resourceType":"Media","status":"completed","subject":{"reference":"%s"},' "$PATIENT"
  printf '"content":{"contentType":"image/jpeg","title":"Lesion photo","data":"'
  base64 -w0 "$PHOTO"
  printf '"}}'
} | post Media | id_of)
CASE=$(printf '{"resourceType":"Parameters","parameter":[
  {"name":"caseType","valueCode":"skin-screening"},
  {"name":"patient","valueReference":{"reference":"%s"}},
  {"name":"focus","valueReference":{"reference":"Media/%s"}},
  {"name":"referredTo","valueReference":{"reference":"Practitioner/demo-doctor"}},
  {"name":"priority","valueCode":"%s"}]}' "$PATIENT" "$MEDIA" "$PRIORITY" | post 'Task/$start-case' | id_of)
echo "started case Task/$CASE ($PRIORITY) on Media/$MEDIA; now run: $HEARTH worker --once"
