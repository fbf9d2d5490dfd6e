"""Mapping files: the YAML that turns stage transitions into GA4 events (pure, no I/O but load)."""

from ga4sync.mapping.apply import apply_mapping
from ga4sync.mapping.load import LoadedMapping, load_mapping
from ga4sync.mapping.model import MappingFile, Rule

__all__ = ["LoadedMapping", "MappingFile", "Rule", "apply_mapping", "load_mapping"]
