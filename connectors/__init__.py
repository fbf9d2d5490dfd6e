"""CRM connectors: each answers "what changed in this window" and nothing else."""
