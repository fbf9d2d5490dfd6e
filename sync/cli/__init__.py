"""The `ga4sync` command line: the top layer, one module per command group.

`app.py` holds the group and the error-to-exit-code policy; each `*_cmd.py` (and `run`,
`demo`) is one command group, registered there.
"""

from ga4sync.cli.app import main

__all__ = ["main"]
