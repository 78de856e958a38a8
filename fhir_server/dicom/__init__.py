"""DICOM edges: the ingest service, the Storage SCP (pynetdicom) and DICOMweb (/dicomweb)."""
