"""The inbound message types: one module each, declaring ``MESSAGE = MessageType(...)``
(``mappings/hl7v2/spec.py``), found by ``mappings/hl7v2/registry.py``."""
