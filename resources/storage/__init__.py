"""FHIR resource storage: engines, tables, versions, the repository (CRUD, history, transactions, patch), migrations and the DICOM file store."""
