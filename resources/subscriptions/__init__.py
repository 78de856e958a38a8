"""Subscriptions in storage: the topic registry (``topics/``, ``registry.py``), the registration
and outbox tables (``tables.py``), matching on the repository's write path (``outbox.py``) and
what delivery reads and records (``delivery.py``). Delivery itself (HTTP) is the edge's:
``fhir_server/runtime/subscriptions.py`` run by ``hearth worker``. See docs/subscriptions.md.

Why here and not in ``workflow/``: matching must run inside the writing transaction on every
write path (REST, transactions, HL7 v2, DICOM ingest, workflow, the AI worker, ``hearth load``),
and the only code every one of them goes through is the repository; ``resources`` imports no
other first-party package, so the topics it evaluates live beside it.
"""
