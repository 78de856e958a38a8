#!/usr/bin/env bash
# `make run`: Hearth's API (`hearth serve`, which also runs the development mailbox when
# HEARTH_DEV_MAILBOX is set) and its background worker (`hearth worker`: AI analyses, report
# delivery, reminders, e-mail, subscription notifications) side by side; Ctrl-C stops both.
set -euo pipefail
HEARTH=${HEARTH:-.venv/bin/hearth}
mkdir -p var
"$HEARTH" worker > var/worker.log 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true' EXIT INT TERM
echo "  The worker runs beside the server (its log: var/worker.log)."
"$HEARTH" serve
