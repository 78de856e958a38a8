"""Pure functions between formats (DICOM → FHIR, …): no I/O beyond their arguments."""
