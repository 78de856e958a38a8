"""Storage for FHIR resources: tables, versions, search indexing and the search-to-SQL compiler.

This package is the only one that talks to the database.
"""
