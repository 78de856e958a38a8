"""Storage for SMART authorization: clients, users, codes, tokens, token lookups and secrets encrypted at rest."""
