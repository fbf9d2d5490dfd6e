"""Shared types at the bottom of the layers: the domain model, clock, errors, durations,
secret references and the YAML-position helpers. Everything may import these; they import
nothing of ga4sync's."""
