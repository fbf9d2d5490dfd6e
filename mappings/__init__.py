"""The shipped mapping files (YAML). A package only so `pip install .` carries them along."""

from pathlib import Path

MAPPINGS_DIR = Path(__file__).parent
