"""Load YAML that people edit by hand, keeping file:line:column for every value.

Config and mapping files are edited by sales ops, not programmers, so every error must point
at a line. PyYAML's composer gives each node its start mark; we build plain Python values from
the node tree ourselves, which also lets us refuse alias bombs and oversized files before they
eat the daemon's memory.
"""

from __future__ import annotations

import codecs
import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 50_000
MAX_DEPTH = 40
"""Nesting deeper than this is never a hand-written config; refusing it keeps recursion safe."""
_TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep; this is not a hand-written file"

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int
    column: int


class YamlSourceError(Exception):
    """The file cannot be read as YAML at all; carries file:line:column for each spot.

    Usually one spot (YAML stops at its first syntax error); tabs are all reported at once so a
    person fixes them in one go.
    """

    def __init__(
        self,
        path: str,
        line: int,
        column: int,
        message: str,
        more: list[tuple[int, int, str]] | None = None,
    ) -> None:
        self.path, self.line, self.column, self.message = path, line, column, message
        self.spots: list[tuple[int, int, str]] = [(line, column, message), *(more or [])]
        super().__init__("\n".join(f"{path}:{ln}:{col}: {msg}" for ln, col, msg in self.spots))

    @property
    def lines(self) -> list[str]:
        return [f"{self.path}:{ln}:{col}: {msg}" for ln, col, msg in self.spots]


@dataclass
class YamlDocument:
    path: str
    data: Any
    positions: dict[Loc, Position]
    sha256: str = ""
    """Hash of the exact bytes parsed, so a stored hash always matches what was applied."""

    def position(self, loc: Loc) -> Position:
        """The most precise known position for a pydantic error location."""
        loc = tuple(loc)
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), Position(1, 1))

    def where(self, loc: Loc) -> str:
        p = self.position(loc)
        return f"{self.path}:{p.line}:{p.column}"


def load_yaml_file(path: str | Path) -> YamlDocument:
    p = Path(path)
    try:
        info = p.stat()
    except OSError as exc:
        raise YamlSourceError(str(path), 1, 1, f"cannot read file: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        # A named pipe or device would block the read forever (the daemon with it).
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe or device)"
        raise YamlSourceError(str(path), 1, 1, f"this is {what}; name the .yaml file itself")
    size = info.st_size
    if size > MAX_FILE_BYTES:
        raise YamlSourceError(
            str(path),
            1,
            1,
            f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}. "
            "A mapping or config file this big is almost certainly not what you meant to edit.",
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise YamlSourceError(str(path), 1, 1, f"cannot read file: {exc.strerror}") from None
    wide = _wide_encoding(raw)
    if wide:
        raise YamlSourceError(
            str(path),
            1,
            1,
            f"file is saved as {wide}; save it as UTF-8 (in most editors: Save As > "
            "Encoding > UTF-8)",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlSourceError(
            str(path),
            line,
            column,
            f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x} here); save it as UTF-8",
        ) from None
    doc = load_yaml_text(text, str(path))
    doc.sha256 = hashlib.sha256(raw).hexdigest()
    return doc


def _wide_encoding(raw: bytes) -> str:
    """`UTF-16`/`UTF-32` (how a person would name it) when the bytes are that, else ``."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32 (it starts with a UTF-32 byte-order mark)"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 (it starts with a UTF-16 byte-order mark)"
    head = raw[:4096]
    if len(head) >= 4 and head.count(0) >= len(head) // 4:
        return "UTF-16 or UTF-32 (it is full of zero bytes)"
    return ""


def load_yaml_text(text: str, path: str = "<string>") -> YamlDocument:
    text = text.lstrip("\ufeff")
    tabs: list[tuple[int, int, str]] = []
    for lineno, text_line in enumerate(text.splitlines(), start=1):
        stripped = text_line.lstrip(" ")
        if stripped.startswith("\t"):
            tabs.append(
                (
                    lineno,
                    len(text_line) - len(stripped) + 1,
                    "tab used for indentation; YAML needs spaces (replace the tab with spaces)",
                )
            )
    if tabs:
        (line, col, msg), *more = tabs
        raise YamlSourceError(path, line, col, msg, more)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem: str = exc.problem or str(exc)
        if exc.context:
            started = exc.context_mark
            if started is not None and mark is not None and started.line != mark.line:
                problem = f"{problem} ({exc.context} that starts at line {started.line + 1})"
            else:
                problem = f"{problem} ({exc.context})"
        raise YamlSourceError(path, line, col, f"not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise YamlSourceError(
            path,
            line,
            col,
            f"not valid YAML: control character #x{exc.character:04x} is not allowed; delete it "
            "(it is often pasted in invisibly)"
            if isinstance(exc.character, int)
            else f"not valid YAML: {exc.reason}",
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSourceError(path, 1, 1, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise YamlSourceError(path, 1, 1, _TOO_DEEP) from None
    positions: dict[Loc, Position] = {}
    if node is None:
        return YamlDocument(path, None, {(): Position(1, 1)})
    builder = _Builder(path, positions)
    data = builder.build(node, ())
    return YamlDocument(path, data, positions)


class _Builder:
    def __init__(self, path: str, positions: dict[Loc, Position]) -> None:
        self.path = path
        self.positions = positions
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if len(loc) > MAX_DEPTH:
            raise YamlSourceError(
                self.path, node.start_mark.line + 1, node.start_mark.column + 1, _TOO_DEEP
            )
        if node.tag.startswith("tag:yaml.org,2002:python/") or not node.tag.startswith(
            "tag:yaml.org,2002:"
        ):
            raise YamlSourceError(
                self.path,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"YAML tag `!{node.tag.removeprefix('tag:yaml.org,2002:')}` is not allowed; "
                "write a plain value",
            )
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlSourceError(
                self.path,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"document expands to more than {MAX_NODES:,} values (YAML anchors/aliases "
                "repeated too often); write the values out instead of aliasing them",
            )
        self.positions.setdefault(
            loc, Position(node.start_mark.line + 1, node.start_mark.column + 1)
        )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlSourceError(
                        self.path,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        "YAML merge keys (<<) are not supported; write the keys out",
                    )
                key = self.build(key_node, loc + ("<key>",))
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise YamlSourceError(
                        self.path,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        "keys must be plain text",
                    )
                # `yes:` or `1.0:` is the text typed, not True or 1.0, in an "unknown key" line.
                skey = key if isinstance(key, str) else str(key_node.value)
                if skey in out:
                    raise YamlSourceError(
                        self.path,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        f"key `{skey}` appears twice in the same block; keep one",
                    )
                self.positions[loc + (skey,)] = Position(
                    key_node.start_mark.line + 1, key_node.start_mark.column + 1
                )
                out[skey] = self.build(value_node, loc + (skey,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise YamlSourceError(
                self.path,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"cannot read value: {problem}",
            ) from None
