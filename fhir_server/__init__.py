"""Hearth's edges: the FastAPI app, FHIR REST interactions, the CLI and settings."""

__version__ = "0.1.0"
