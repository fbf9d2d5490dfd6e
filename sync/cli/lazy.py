"""A click group that imports a command's module only when that command runs.

`ga4sync --help` and a cron `ga4sync run` should not spend most of their time importing
the CRM SDKs, SQLAlchemy and rich for commands they never touch, so the group knows each
command by name, module and one-line summary, and imports the module on first use.

It also lets the global options (`--config`, `--log-level`, `--log-format`) stand after the
subcommand, as people type them (`ga4sync run --config prod.yaml`): they are moved in front of
the subcommand before click parses, so there is one definition and one meaning for each.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    name: str
    module: str
    attribute: str
    summary: str
    """Shown by `ga4sync --help` without importing the module (kept in step by a test)."""


class LazyGroup(click.Group):
    def __init__(
        self,
        *args: object,
        lazy_commands: tuple[LazyCommand, ...] = (),
        global_options: dict[str, bool] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = {c.name: c for c in lazy_commands}
        self.global_options = global_options or {}
        """Option name -> whether it takes a value, for moving them before the subcommand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            spec = self.lazy_commands[cmd_name]
            command = getattr(importlib.import_module(spec.module), spec.attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy_commands[name].summary) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.hoist_global_options(args))

    def hoist_global_options(self, args: list[str]) -> list[str]:
        """`run --config x.yaml` -> `--config x.yaml run`; nothing after `--` is touched."""
        position = self._subcommand_position(args)
        if position is None:
            return args
        front, rest, moved = list(args[:position]), [], []
        i = position
        while i < len(args):
            arg = args[i]
            if arg == "--":
                rest.extend(args[i:])
                break
            name = arg.split("=", 1)[0]
            if name in self.global_options:
                takes_value = self.global_options[name] and "=" not in arg
                moved.extend(args[i : i + (2 if takes_value else 1)])
                i += 2 if takes_value else 1
                continue
            rest.append(arg)
            i += 1
        return front + moved + rest

    def _subcommand_position(self, args: list[str]) -> int | None:
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                return None
            if arg.startswith("-"):
                name = arg.split("=", 1)[0]
                i += 2 if self.global_options.get(name) and "=" not in arg else 1
                continue
            return i if arg in self.lazy_commands or arg in self.commands else None
        return None
