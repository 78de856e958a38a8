"""Pure functions between formats (DICOM → FHIR, FHIR → report PDF, …): no I/O beyond their
arguments."""
