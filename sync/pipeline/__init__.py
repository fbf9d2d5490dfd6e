"""The pipeline: config, the capture plan (mapping + connector + stage vocabulary + window),
capture into the outbox, delivery to GA4. Run, daemon, backfill, dry run and preview all go
through it, so they cannot disagree about what a CRM move becomes."""
