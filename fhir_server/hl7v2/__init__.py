"""The HL7 v2 edge: the MLLP listener (``mllp.py``), ``POST /fhir/$hl7v2`` (``web.py``) and the
service both use (``service.py``): parse, map (``mappings/hl7v2``), run the transaction, ACK."""
