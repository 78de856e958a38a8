"""Settings for the ``hearth`` commands: ``HEARTH_*`` environment variables, overridden by flags.

Its own module so that every command module (``cli.py``, ``cli_ai.py``) imports it and none
imports another: the command modules form no cycle.
"""

from __future__ import annotations

import os

import click

from fhir_server.runtime.settings import Settings


def settings_from_flags(**overrides: object) -> Settings:
    """The settings, with each flag that was given (not None) written back into the environment
    (so uvicorn's worker processes see the same settings)."""
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"HEARTH_{key.upper()}"] = str(value)
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: print it plainly and stop
        raise click.ClickException(f"invalid settings: {exc}") from exc
