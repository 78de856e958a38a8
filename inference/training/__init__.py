"""Training scripts for the shipped image models (CPU, seeded, a few minutes each)."""
