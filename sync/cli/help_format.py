"""Command lists in `--help` that show each command's first paragraph whole.

click cuts a subcommand's first sentence to fit one line ("each stage move -> GA4 event
or..."), so at 80 columns a person read half a sentence. Here it is wrapped instead.
"""

from __future__ import annotations

import inspect

import click


def summary_line(command: click.Command) -> str:
    if command.short_help:
        return command.short_help
    # The whole first paragraph: finding a sentence's end trips over "e.g." and "2.5".
    paragraph = inspect.cleandoc(command.help or "").split("\n\n", 1)[0]
    return " ".join(paragraph.split())


class HelpGroup(click.Group):
    """A command group whose `--help` lists each command with its whole first paragraph."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary_line(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
