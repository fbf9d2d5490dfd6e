"""Which files a CSV connector reads, and how: content hash, encoding and delimiter.

One streaming pass over each file (1 MiB at a time, never the whole file in memory) yields its
SHA-256, which lets the connector remember files it has fully imported, and tells UTF-8 (with
or without a BOM, as Excel writes it) from legacy single-byte exports: a file that is not valid
UTF-8 is read as Windows-1252, which is what "ANSI" exports from European POS systems mostly
are, and the run says so in a warning.
"""

from __future__ import annotations

import codecs
import csv as stdlib_csv
import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 20
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
FALLBACK_ENCODING = "cp1252"
CELL_LIMIT = 16 << 20
"""Longest cell (characters) read; Python's csv module stops at 128 KiB by default."""


@dataclass(frozen=True)
class FileFingerprint:
    """What one pass over a file learned."""

    path: Path
    sha256: str
    encoding: str
    """The codec pandas should read with (utf-8-sig drops a BOM)."""
    guessed_encoding: bool
    """True when the file was not UTF-8 and the fallback codec was chosen."""
    size: int
    undecodable: str | None = None
    """Where the file is not Windows-1252 either (`byte 0x90 at offset 125`); then unread."""

    @property
    def done_key(self) -> str:
        """The state store key that marks this content as fully imported."""
        return f"file:{self.sha256}"


def matching_files(pattern: str, base_dir: Path) -> list[Path]:
    """Files the `path` setting names (a path or a glob, relative to the config), sorted.

    Sorted by name so exports named by date are read in order.
    """
    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = base_dir / full
    if glob.has_magic(str(full)):
        return sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())
    return [full] if full.is_file() else []


def fingerprint(path: Path, encoding: str = "auto") -> FileFingerprint:
    """Hash the file and settle its encoding in one streaming pass.

    With `auto`: a UTF-16/32 byte-order mark, or the NUL byte in every other position that
    UTF-16 text without one has (Excel's "Unicode Text" export), picks that codec; otherwise
    UTF-8, else Windows-1252. A file that is none of these (a byte Windows-1252 does not
    define) is reported by `undecodable` rather than read as garbage.

    Args:
        path: the file.
        encoding: `auto`, or a codec name the settings force (then only hashed).
    """
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    ansi = codecs.getincrementaldecoder(FALLBACK_ENCODING)()
    auto = encoding == "auto"
    is_utf8, ansi_error = auto, ""
    size = 0
    first = b""
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            if not first:
                first = block[:SNIFF_BYTES]
            digest.update(block)
            if auto and not ansi_error:
                try:
                    ansi.decode(block)
                except UnicodeDecodeError as exc:
                    ansi_error = f"byte 0x{block[exc.start]:02x} at offset {size + exc.start:,}"
            if is_utf8:
                try:
                    utf8.decode(block)
                except UnicodeDecodeError:
                    is_utf8 = False
            size += len(block)
        if is_utf8:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                is_utf8 = False
    guessed, undecodable = False, None
    if not auto:
        chosen = encoding
    elif (wide := _wide_unicode(first)) is not None:
        chosen = wide
    elif is_utf8:
        chosen = "utf-8-sig" if first.startswith(codecs.BOM_UTF8) else "utf-8"
    else:
        chosen, guessed = FALLBACK_ENCODING, True
        if ansi_error:
            undecodable = ansi_error
    return FileFingerprint(path, digest.hexdigest(), chosen, guessed, size, undecodable)


def _wide_unicode(first: bytes) -> str | None:
    """`utf-16`/`utf-32` when the file's start says so (a BOM, or NULs in every other byte)."""
    if first.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = first[: len(first) // 2 * 2]
    if len(sample) < 4 or sample.count(0) < len(sample) // 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > len(sample) // 4 and even == 0:
        return "utf-16-le"
    if even > len(sample) // 4 and odd == 0:
        return "utf-16-be"
    return None


def sniff_delimiter(path: Path, encoding: str) -> str:
    """The delimiter of the file's first 64 KiB among `, ; TAB |`; a comma when unsure."""
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        sample = fh.read(SNIFF_BYTES)
    if not sample.strip():
        return ","
    try:
        return stdlib_csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except stdlib_csv.Error:
        header = sample.splitlines()[0] if sample.splitlines() else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def allow_long_cells() -> None:
    """Raise Python's csv cell limit (128 KiB) to CELL_LIMIT, for us and pandas' python engine.

    A long free-text note is not a reason to drop the rest of a file; the limit stays finite
    so a file with an unclosed quote is still reported instead of read into memory whole.
    """
    if stdlib_csv.field_size_limit() < CELL_LIMIT:
        stdlib_csv.field_size_limit(CELL_LIMIT)


@dataclass(frozen=True)
class RecordCount:
    """What the strict stdlib reader makes of a file, to check pandas against."""

    records: int
    """Records after the header (empty lines included), up to any break."""
    broken_at: int | None = None
    """Spreadsheet row number (header = 1) of the record the reader could not finish."""
    problem: str | None = None
    widest: int = 0
    """The most cells any record has (the header included), so pandas can be given room."""
    header: tuple[str, ...] = ()
    """The first record's cells, stripped (and without a stray BOM): the column names."""


def count_records(path: Path, encoding: str, delimiter: str) -> RecordCount:
    """Count the file's records with Python's strict csv reader, in one streaming pass.

    pandas' python engine, given an `on_bad_lines` callable, drops a record its tokenizer
    cannot finish (an unterminated quote swallows the rest of the file) without a word. This
    count lets the connector notice and name the row instead of losing rows silently.
    """
    allow_long_cells()
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        reader = stdlib_csv.reader(fh, delimiter=delimiter, strict=True)
        records = -1  # the header
        widest = 0
        header: tuple[str, ...] = ()
        try:
            for cells in reader:
                if records == -1:
                    header = tuple(c.strip().lstrip("\ufeff").strip() for c in cells)
                records += 1
                widest = max(widest, len(cells))
        except stdlib_csv.Error as exc:
            return RecordCount(
                max(records, 0),
                broken_at=records + 2,
                problem=str(exc),
                widest=widest,
                header=header,
            )
    return RecordCount(max(records, 0), widest=widest, header=header)
