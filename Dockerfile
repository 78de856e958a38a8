FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_server fhir_server
COPY resources resources
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["hearth", "serve"]
