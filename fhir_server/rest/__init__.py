"""FHIR REST over HTTP: the generic router, request context, content negotiation, interactions, operations, Bulk Data endpoints, error rendering and security headers."""
