"""Task engine: declarative case definitions, FHIR Task transitions, routing by role, scheduling,
reminders and report delivery (docs/workflow.md)."""
