FROM python:3.11-slim
# WeasyPrint (PDF reports) needs Pango; the CPU build of torch keeps the image free of CUDA.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_server fhir_server
COPY resources resources
COPY mappings mappings
COPY inference inference
COPY workflow workflow
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir '.[ai]'
ENTRYPOINT []
CMD ["hearth", "serve"]
