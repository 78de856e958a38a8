"""Alembic migrations for Hearth's schema; run with ``hearth db upgrade``."""
