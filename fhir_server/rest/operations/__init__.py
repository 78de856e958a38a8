"""FHIR operations: one module per operation, registered in ``registry``."""
