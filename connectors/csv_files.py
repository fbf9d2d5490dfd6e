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

    Args:
        path: the file.
        encoding: `auto`, or a codec name the settings force (then only hashed).
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = encoding == "auto"
    size = 0
    first = b""
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            if not first:
                first = block[:4]
            size += len(block)
            digest.update(block)
            if utf8:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    utf8 = False
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    if encoding != "auto":
        chosen, guessed = encoding, False
    elif utf8:
        chosen = "utf-8-sig" if first.startswith(codecs.BOM_UTF8) else "utf-8"
        guessed = False
    else:
        chosen, guessed = FALLBACK_ENCODING, True
    return FileFingerprint(path, digest.hexdigest(), chosen, guessed, size)


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


@dataclass(frozen=True)
class RecordCount:
    """What the strict stdlib reader makes of a file, to check pandas against."""

    records: int
    """Records after the header (empty lines included), up to any break."""
    broken_at: int | None = None
    """Spreadsheet row number (header = 1) of the record the reader could not finish."""
    problem: str | None = None


def count_records(path: Path, encoding: str, delimiter: str) -> RecordCount:
    """Count the file's records with Python's strict csv reader, in one streaming pass.

    pandas' python engine, given an `on_bad_lines` callable, drops a record its tokenizer
    cannot finish (an unterminated quote swallows the rest of the file) without a word. This
    count lets the connector notice and name the row instead of losing rows silently.
    """
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        reader = stdlib_csv.reader(fh, delimiter=delimiter, strict=True)
        records = -1  # the header
        try:
            for _ in reader:
                records += 1
        except stdlib_csv.Error as exc:
            return RecordCount(max(records, 0), broken_at=records + 2, problem=str(exc))
    return RecordCount(max(records, 0))
