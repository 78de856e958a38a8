"""Durable background work: the work queue, Bulk Data export jobs and re-indexing."""
