# The web app (Vite + Preact) is built from the committed lockfile in a Node stage; the Python
# image gets only its dist/.
FROM node:20-slim AS portal
WORKDIR /portal
COPY fhir_server/webapp/portal/package.json fhir_server/webapp/portal/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY fhir_server/webapp/portal/ ./
RUN npm run build

FROM python:3.11-slim
# WeasyPrint (PDF reports) needs Pango; the CPU build of torch keeps the image free of CUDA;
# pg_dump / pg_restore for `hearth backup` and `hearth restore`.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 fonts-dejavu-core \
        postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_server fhir_server
COPY resources resources
COPY mappings mappings
COPY inference inference
COPY workflow workflow
COPY terminology terminology
COPY assistant assistant
COPY demo demo
COPY --from=portal /portal/dist fhir_server/webapp/portal/dist
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir '.[ai]'
ENTRYPOINT []
CMD ["hearth", "serve"]
