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

from sync.ga4.rules import Mode, debug_response, validate_payload

MODES = {"relaxed": Mode.RELAXED, "enforce": Mode.ENFORCE}


@click.group()
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
        # GA4 reads the body as UTF-8; a BOM from a Windows editor is forgiven.
        payload = json.loads(file.read().decode("utf-8-sig"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        click.echo(f"error: {file.name} is not JSON: {exc}", err=True)
        sys.exit(2)
    chosen = MODES[mode] if mode else _payload_mode(payload)
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k != "validation_behavior"}
    messages = validate_payload(payload, mode=chosen, now=datetime.now(UTC))
    click.echo(json.dumps(debug_response(messages), indent=2, ensure_ascii=False))
    sys.exit(1 if messages else 0)


def _payload_mode(payload: object) -> Mode:
    if isinstance(payload, dict) and payload.get("validation_behavior") == Mode.ENFORCE.value:
        return Mode.ENFORCE
    return Mode.RELAXED
