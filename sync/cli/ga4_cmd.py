"""`ga4sync ga4 validate FILE.json`: our validator, in the shape of Google's debug endpoint.

Prints `{"validationMessages": [...]}` exactly as `/debug/mp/collect` answers (the first
problem only), so a payload can be checked here and against Google side by side. Exit codes:
0 clean, 1 messages, 2 the input is not JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO

import click
from ga4sync.cli.help_format import HelpGroup
from ga4sync.ga4.rules import Mode, NotJson, debug_response, validate_body

MODES = {"relaxed": Mode.RELAXED, "enforce": Mode.ENFORCE}


@click.group(cls=HelpGroup)
def ga4() -> None:
    """GA4 Measurement Protocol tools."""


@ga4.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--mode",
    type=click.Choice(sorted(MODES)),
    default=None,
    help="relaxed (what production accepts) or enforce (what ga4sync requires). Default: the "
    "payload's validation_behavior, else relaxed, as Google's validation server does.",
)
def validate(file: IO[bytes], mode: str | None) -> None:
    """Validate a Measurement Protocol body (FILE, or - for stdin) like /debug/mp/collect."""
    try:
        _, messages = validate_body(
            file.read(), mode=MODES[mode] if mode else None, now=datetime.now(UTC)
        )
    except NotJson as exc:
        click.echo(f"error: {file.name} is not JSON: {exc}", err=True)
        sys.exit(2)
    text = json.dumps(debug_response(messages), indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from the input, echoed in a description
        text = json.dumps(debug_response(messages), indent=2)
    click.echo(text)
    sys.exit(1 if messages else 0)
