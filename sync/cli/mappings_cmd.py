"""`ga4sync mappings validate|preview|schema`: check a mapping and see what it would send.

Exit codes: validate 0 clean, 1 any problem; preview 0; usage or config errors 2.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from ga4sync.cli.display import cell, printable
from ga4sync.cli.help_format import HelpGroup
from ga4sync.connectors.registry import AnyConnectorSettings
from ga4sync.core.durations import format_duration, parse_duration
from ga4sync.core.errors import ConfigError, ConnectorError
from ga4sync.core.model import TimeWindow
from ga4sync.core.validation_errors import Problem
from ga4sync.mapping.checks import FieldCatalog
from ga4sync.mapping.load import MappingCheck, check_mapping, load_mapping
from ga4sync.mapping.schema import schema_text
from ga4sync.pipeline.catalog import CatalogUnavailable, fetch_catalog
from ga4sync.pipeline.config import Config, load_config
from ga4sync.pipeline.preview import (
    PreviewLine,
    PreviewRow,
    read_preview,
    summarize,
    to_csv,
    to_json,
)
from rich.console import Console
from rich.table import Table
from rich.text import Text

MAPPING_SUFFIXES = (".yaml", ".yml")


@click.group(cls=HelpGroup)
def mappings() -> None:
    """Check mapping files and preview what they would send."""


@mappings.command()
def schema() -> None:
    """Print the JSON Schema of mapping files (editors use it to validate as you type)."""
    click.echo(schema_text(), nl=False)


# -- validate ----------------------------------------------------------------------------------
@mappings.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--offline",
    is_flag=True,
    help="Do not ask the CRM for its field list (field names are then not checked).",
)
@click.pass_context
def validate(ctx: click.Context, paths: tuple[Path, ...], offline: bool) -> None:
    """Report every problem in mapping files (files or folders) at once; exit 1 if any.

    Without PATH: the mappings named in the config file, or else the mappings/ folder. When a
    file belongs to a configured connector with credentials, field names are checked against
    the CRM (Salesforce describe, HubSpot properties).
    """
    config = _config_if_present(ctx, required=not paths)
    if not paths and config is None and not DEFAULT_FOLDER.is_dir():
        _nothing_to_validate(ctx)
    files, problems = _targets(paths, config)
    missing = len(problems)
    checked = 0
    catalogs: dict[str, FieldCatalog | None] = {}
    unchecked = 0
    for path in files:
        result = check_mapping(path)
        settings = _connector_for(config, path) if config else None
        catalog = None
        if result.loaded is not None and settings is not None and not offline:
            catalog = _catalog(config, settings, result, catalogs)
            if catalog is not None:
                result = check_mapping(path, catalog)
        unchecked += catalog is None
        checked += 1
        problems += result.problems
        if not result.problems and result.loaded is not None:
            m = result.loaded.model
            click.echo(f"ok {path}: {len(m.rules)} rules, {m.object}.{m.stage_field}")
    for problem in problems:
        click.echo(str(problem))
    if unchecked:
        click.echo(_not_checked_note(ctx, config, offline))
    bad_files = len({p.path for p in problems})
    if problems:
        total = checked + missing
        click.echo(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {bad_files} of "
            f"{total} file{'s' if total != 1 else ''}"
        )
        sys.exit(1)
    click.echo(f"all {checked} mapping file{'s' if checked != 1 else ''} valid")


DEFAULT_FOLDER = Path("mappings")
"""What `validate` checks with no PATH and no config (relative to the working directory)."""


def _nothing_to_validate(ctx: click.Context) -> None:
    """Say what was looked for and how to point at mappings, not `mappings:1:1: file not
    found` (which reads as a broken file called `mappings`)."""
    click.echo(
        f"error: nothing to validate: no config file at {ctx.obj['config_path']} and no "
        f"mappings/ folder in {Path.cwd()}; name the files or folders "
        "(`ga4sync mappings validate PATH...`) or the config that lists them "
        "(`ga4sync --config PATH/TO/ga4sync.yaml mappings validate`, or GA4SYNC_CONFIG)",
        err=True,
    )
    sys.exit(2)


def _not_checked_note(ctx: click.Context, config: Config | None, offline: bool) -> str:
    """Said once: a file can be valid YAML and valid GA4 and still name a stage the CRM
    does not have, and then its rule silently never fires."""
    head = "note: stage and field names were not checked against the CRM"
    if offline:
        return f"{head} (--offline)"
    if config is None:
        return (
            f"{head} (no config file at {ctx.obj['config_path']}); to check them, run "
            "`ga4sync --config PATH/TO/ga4sync.yaml mappings validate`"
        )
    return (
        f"{head} for files no connector in {config.path} uses (or whose CRM could not be "
        "asked); name them in a connector's `mapping:` to check them"
    )


def _config_if_present(ctx: click.Context, *, required: bool) -> Config | None:
    """The config, when there is one. With explicit paths a broken config only costs the
    CRM field check, so a mapping can be validated while the config is being fixed."""
    path = Path(ctx.obj["config_path"])
    if not path.exists():
        return None
    try:
        config = load_config(path)
        config.check_ca_files()  # the field check asks the CRM
        return config
    except ConfigError as exc:
        if required:
            raise
        click.echo(
            f"note: config {path} is broken, so field names are not checked: {exc.problems[0]}",
            err=True,
        )
        return None


def _targets(paths: tuple[Path, ...], config: Config | None) -> tuple[list[Path], list[Problem]]:
    if not paths:
        if config is not None:
            return list(dict.fromkeys(config.resolve(c.mapping) for c in config.connectors)), []
        paths = (DEFAULT_FOLDER,)
    files: list[Path] = []
    problems: list[Problem] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in MAPPING_SUFFIXES and f.is_file())
            if not found:
                problems.append(
                    Problem(str(p), 1, 1, "", "no .yaml mapping files in this folder", "", "")
                )
            files += found
        elif p.exists():
            files.append(p)
        else:
            problems.append(
                Problem(str(p), 1, 1, "", "file not found", "", "check the path and spelling")
            )
    return files, problems


def _connector_for(config: Config | None, path: Path) -> AnyConnectorSettings | None:
    if config is None:
        return None
    target = path.resolve()
    for c in config.connectors:
        if config.resolve(c.mapping).resolve() == target:
            return c
    return None


def _catalog(
    config: Config | None,
    settings: AnyConnectorSettings,
    result: MappingCheck,
    cache: dict[str, FieldCatalog | None],
) -> FieldCatalog | None:
    assert config is not None and result.loaded is not None
    model = result.loaded.model
    key = f"{settings.name}/{model.object}"
    if key not in cache:
        try:
            catalog = fetch_catalog(settings, result.loaded, base_dir=config.base_dir)
            for warning in catalog.warnings:
                click.echo(f"warning: {result.path}: connector {settings.name}: {warning}")
            cache[key] = catalog
        except CatalogUnavailable as exc:
            click.echo(
                f"note: field names in {result.path} not checked: connector {settings.name}: {exc}",
                err=True,
            )
            cache[key] = None
    return cache[key]


# -- preview -----------------------------------------------------------------------------------
@mappings.command()
@click.option("--connector", "connector_name", required=True, help="Connector name in the config.")
@click.option("--since", default="7d", show_default=True, help="How far back to read CRM changes.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of the terminal.",
)
@click.pass_context
def preview(
    ctx: click.Context, connector_name: str, since: str, fmt: str, out: Path | None
) -> None:
    """Dry run over real CRM data: each stage move -> GA4 event or skip reason, with counts.

    Sends nothing to GA4 and records nothing in the state store.
    """
    config = load_config(ctx.obj["config_path"])
    config.check_ca_files()  # a preview reads the CRM
    settings = config.connector(connector_name)
    try:
        window_size = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    loaded = load_mapping(config.resolve(settings.mapping))
    now = datetime.now(UTC)
    try:
        found = read_preview(
            config, connector_name, loaded, TimeWindow(start=now - window_size), now=now
        )
    except ConnectorError as exc:
        raise ConfigError(f"connector {settings.name}: {exc}") from None
    for warning in found.warnings:
        click.echo(f"warning: {settings.name}: {printable(warning)}", err=True)
    rows = found.rows
    lines = summarize(rows)
    header = {
        "connector": connector_name,
        "mapping": loaded.path,
        "object": loaded.model.object,
        "since": (now - window_size).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "transitions_seen": len(rows),
        "sent": 0,
        "recorded": 0,
    }
    if fmt == "csv":
        _emit(to_csv(lines), out)
    elif fmt == "json":
        _emit(to_json(header, lines, rows), out)
    else:
        title = printable(
            f"Preview of {connector_name} ({loaded.model.object}.{loaded.model.stage_field}), "
            f"last {format_duration(window_size)}: {len(rows)} transitions. "
            "Nothing was sent or recorded."
        )
        _print_table(_table(title, lines, rows), out)


def _table(title: str, lines: list[PreviewLine], rows: list[PreviewRow]) -> Table:
    table = Table(title=Text(title), title_justify="left", show_footer=True)
    totals = {k: sum(ln.count for ln in lines if ln.outcome == k) for k in ("send", "skip")}
    invalid = sum(ln.count for ln in lines if ln.outcome == "invalid")
    # Stage names are never cut: they are what a person matches against the mapping.
    table.add_column("from", footer="total", overflow="fold")
    table.add_column("to", overflow="fold")
    table.add_column("result")
    table.add_column("GA4 event / reason")
    table.add_column("rule")
    table.add_column("count", justify="right", footer=str(len(rows)))
    table.add_column(
        "example",
        footer=f"send {totals['send']}, skip {totals['skip']}, invalid {invalid}",
        overflow="fold",
    )
    style = {"send": "green", "skip": "yellow", "invalid": "red"}
    for ln in lines:  # CRM text: shown literally, never read as markup (display.py)
        table.add_row(
            cell(ln.from_value),
            cell(ln.to_value),
            cell(ln.outcome, style.get(ln.outcome, "")),
            cell(ln.result),
            cell(ln.rule),
            str(ln.count),
            cell(ln.example),
        )
    return table


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)


def _print_table(table: Table, out: Path | None) -> None:
    if out is None:
        Console(width=160).print(table)
        return
    with out.open("w", encoding="utf-8") as fh:
        Console(file=fh, width=160, no_color=True).print(table)
    click.echo(f"wrote {out}", err=True)
