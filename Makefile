# Hearth — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HEARTH_DATABASE_URL ?= sqlite:///var/hearth.db
export HEARTH_DATA_DIR ?= var

.PHONY: install webapp system-deps run serve-pg test test-sqlite lint fmt bench bench-dicom bench-dicom-qr bench-dicom-large bench-ai bench-hl7v2 clean postgres dicom-tools chromium

install: $(STAMP) webapp

# The patient portal (fhir_server/webapp/portal: Vite + Preact, docs/webapp.md), built with the
# machine's node 20 / npm from the committed package-lock.json into portal/dist/ (git ignores
# it), which Hearth serves under /app/portal/. Rebuilt when the lockfile or a source changes.
PORTAL := fhir_server/webapp/portal
PORTAL_SRC := $(wildcard $(PORTAL)/src/*) $(wildcard $(PORTAL)/src/*/*) $(PORTAL)/index.html $(PORTAL)/vite.config.js
webapp: $(PORTAL)/dist/index.html

$(PORTAL)/node_modules/.installed: $(PORTAL)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (node 20) is needed to build the patient portal: apt-get install nodejs npm"; exit 1; }
	@cd $(PORTAL) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(PORTAL)/dist/index.html: $(PORTAL)/node_modules/.installed $(PORTAL_SRC)
	@cd $(PORTAL) && npm run --silent build -- --logLevel warn
	@echo "built the patient portal into $(PORTAL)/dist"

# Re-installs only when pyproject.toml changes. torch is pinned to the local CPU build first so
# that nothing later pulls a CUDA build (see README, "AI extra").
$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip >/dev/null
	@if grep -q '^ai = ' pyproject.toml; then $(BIN)/pip install -q torch==2.13.0; fi
	@$(BIN)/pip install -q -e '.[dev]' $$(grep -q '^ai = ' pyproject.toml && echo "-e .[dev,ai]")
	@touch $(STAMP)
	@echo "installed into $(VENV)"

# The development mailbox (a local SMTP sink, docs/webapp.md): `make run` sends reports there.
run: export HEARTH_DEV_MAILBOX ?= var/mailbox
run: export HEARTH_SELF_REGISTRATION ?= true
run: install
	@mkdir -p var
	@$(BIN)/hearth db upgrade
	@if [ ! -f var/.demo-story ]; then $(BIN)/hearth demo demo/ && touch var/.demo-story; fi
	@if [ ! -f var/.demo-logins ]; then bash scripts/demo-logins.sh && touch var/.demo-logins; fi
	@if [ ! -f var/.webapp-client ]; then bash scripts/webapp-client.sh && touch var/.webapp-client; fi
	@if [ ! -f var/.portal-client ]; then bash scripts/portal-client.sh && touch var/.portal-client; fi
	@echo ""
	@echo "  Hearth is starting on http://127.0.0.1:8080  (FHIR base: http://127.0.0.1:8080/fhir)"
	@echo "  Clinicians' web app: http://127.0.0.1:8080/app/  (sign in as demo-doctor, demo-pharmacist, ...)"
	@echo "  Patient portal: http://127.0.0.1:8080/app/portal/  (sign in as demo-patient)"
	@echo "  Demo logins (password hearth-demo-password): demo-patient, demo-doctor, demo-pharmacist,"
	@echo "  demo-cadre, demo-admin. Staff need TOTP: QR codes and recovery codes are in var/demo-logins.txt"
	@echo "  The demo story: two reports delivered, an urgent and a routine case for demo-doctor, one"
	@echo "  for demo-pharmacist, one for demo-admin. Mail goes to the development mailbox ($$HEARTH_DEV_MAILBOX),"
	@echo "  which demo-admin reads at /app/portal/ (Sign in as a doctor or administrator, then Mailbox)."
	@echo "  Patients may also create their own account (Create an account, on the sign-in page): the"
	@echo "  verification link arrives in that mailbox (HEARTH_SELF_REGISTRATION, docs/security.md)."
	@echo "  Try: curl -H \"Authorization: Bearer \$$($(BIN)/hearth token --client demo-ops --scope 'system/*.rs')\" \\"
	@echo "         http://127.0.0.1:8080/fhir/Patient?_count=5"
	@echo ""
	@bash scripts/run-dev.sh

# Make sure PostgreSQL answers on 127.0.0.1:5432, starting the Debian cluster if it is down.
postgres:
	@bash scripts/ensure-postgres.sh

# dcmtk and Orthanc, the real DICOM peers of the DICOM tests (apt-get when missing).
dicom-tools:
	@bash scripts/ensure-dicom-tools.sh

# WeasyPrint (PDF reports) needs Pango from Debian; installed here when missing (CI: fresh clone).
system-deps:
	@ldconfig -p | grep -q libpangoft2-1.0 && ldconfig -p | grep -q libharfbuzz-subset || { apt-get update -qq && apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 fonts-dejavu-core >/dev/null; }


# Debian chromium for the Playwright login tests, installed with apt-get when missing.
chromium:
	@bash scripts/ensure-chromium.sh

test: install postgres dicom-tools system-deps chromium
	@$(BIN)/pytest -n 3 --dist worksteal -q

lint: install
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/python scripts/check_layers.py
	@$(BIN)/python scripts/conformance.py
	@$(BIN)/mypy fhir_server resources mappings inference workflow terminology assistant

fmt: install
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

bench: install postgres
	@$(BIN)/python bench/crud.py

bench-dicom: install postgres dicom-tools
	@$(BIN)/python bench/dicom_ingest.py

bench-dicom-qr: install postgres dicom-tools
	@$(BIN)/python bench/dicom_qr.py --studies 10000 --bulk

bench-dicom-large: install postgres dicom-tools
	@$(BIN)/python bench/dicom_large.py

bench-hl7v2: install postgres
	@$(BIN)/python bench/hl7v2.py

bench-ai: install postgres
	@$(BIN)/python bench/inference.py

# FHIR XML beside FHIR JSON: create, read, search page, and the conversion (docs/fhir-xml.md)
.PHONY: bench-xml
bench-xml: install postgres
	@$(BIN)/python bench/fhir_xml.py

# 1M Synthea resources through the transaction path, then the search query mix (see
# docs/performance.md; ARGS=--reuse queries the database an earlier run loaded).
.PHONY: bench-search
bench-search: install postgres
	@$(BIN)/python bench/search.py $(ARGS)

# The SMART Bulk Data Tester against a freshly started Hearth (docs/bulk-export.md "The Bulk Data
# Tester"). Fetches nothing: BDT_DIR is a bdt checkout with `npm ci --omit=dev` run in it once.
# BDT_BACKEND=sqlite for the embedded database; BDT_ARGS passes `bdt test` options (-P, -m).
BDT_DIR ?= ../bdt
BDT_BACKEND ?= postgresql
.PHONY: bdt
bdt: install
	@if [ "$(BDT_BACKEND)" = postgresql ]; then $(MAKE) --no-print-directory postgres; fi
	@$(BIN)/python bench/bdt.py --bdt-dir "$(BDT_DIR)" --backend $(BDT_BACKEND) -- $(BDT_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache $(PORTAL)/node_modules $(PORTAL)/dist
