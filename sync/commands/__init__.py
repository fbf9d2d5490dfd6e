"""CLI commands, one module per command group, registered in sync/cli.py."""
