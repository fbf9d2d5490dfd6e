"""The records of one CSV file, parsed once, streamed, with their true cell counts.

Python's csv reader in strict mode is the one parser: it hands over each record exactly as
written (a short row is short, a wide row is wide, an empty trailing cell is a cell), so the
connector can refuse a row whose cell count differs from the header instead of guessing which
cells were padding. Records are numbered as a spreadsheet shows them (the header is row 1, an
empty line is a row, a quoted value with line breaks is one row).

The reader stops at the byte size the connector saw settle and hashes the bytes it parses, so
rows appended after that look are left for the next run, and the connector can tell whether
what it parsed is the content it fingerprinted.
"""

from __future__ import annotations

import csv as stdlib_csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CELL_LIMIT = 16 << 20
"""Longest cell (characters) read; Python's csv module stops at 128 KiB by default. A long
free-text note is not a reason to drop the rest of a file; the limit stays finite so a file
with an unclosed quote is reported instead of read into memory whole."""


@dataclass(frozen=True)
class Record:
    """One record as written: its spreadsheet row number and its cells, unstripped."""

    number: int
    cells: list[str]


class UnreadableRecord(Exception):
    """The parser cannot finish this record (an unclosed quote, a cell over CELL_LIMIT);
    nothing after it can be split into rows reliably."""

    def __init__(self, number: int, problem: str) -> None:
        super().__init__(f"row {number}: {problem}")
        self.number = number
        self.problem = problem


class _HashedPrefix(io.RawIOBase):
    """The first `limit` bytes of a binary file, hashed as they are read."""

    def __init__(self, raw: io.BufferedReader, limit: int) -> None:
        self._raw = raw
        self._left = limit
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        got = self._raw.readinto(view)
        if not got:
            return 0
        self.digest.update(view[:got])
        self._left -= got
        return got


class RecordReader:
    """Records of `path` decoded with `encoding`, up to `size` bytes; use as a context manager.

    Iterating yields `Record`s and raises `UnreadableRecord` at the first record the strict
    parser cannot finish; the records before it have been yielded. `sha256` is the hash of
    the bytes parsed, complete once iteration has ended.
    """

    def __init__(self, path: Path, *, encoding: str, delimiter: str, size: int) -> None:
        self._binary = path.open("rb")
        self._prefix = _HashedPrefix(self._binary, size)
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._prefix, buffer_size=1 << 20), encoding=encoding, newline=""
        )
        self._delimiter = delimiter

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._text.close()
        self._binary.close()

    @property
    def sha256(self) -> str:
        return self._prefix.digest.hexdigest()

    def __iter__(self) -> Iterator[Record]:
        if stdlib_csv.field_size_limit() < CELL_LIMIT:
            stdlib_csv.field_size_limit(CELL_LIMIT)
        reader = stdlib_csv.reader(self._text, delimiter=self._delimiter, strict=True)
        number = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except stdlib_csv.Error as exc:
                raise UnreadableRecord(number + 1, str(exc)) from None
            except UnicodeError as exc:  # the fingerprint decoded it: the file changed since
                raise UnreadableRecord(number + 1, f"cannot be decoded ({exc})") from None
            number += 1
            yield Record(number, cells)
