"""``python -m fhir_server.cli``: the ``hearth`` command."""

from fhir_server.cli import main

main()
