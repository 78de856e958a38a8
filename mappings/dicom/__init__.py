"""DICOM (PS3.3 / PS3.6 attributes) → FHIR R4 resources, following the R4 ImagingStudy mapping
table (imagingstudy-mappings.html)."""
