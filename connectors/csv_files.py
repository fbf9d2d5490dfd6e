"""Which files a CSV connector reads, and how: content hash, encoding and delimiter.

One streaming pass over each file's bytes (1 MiB at a time, never the whole file in memory),
before any row is parsed, yields its SHA-256, which lets the connector skip content it has
fully imported without parsing it, and settles the encoding, which a file can only prove by
its last byte: UTF-8 (with or without a BOM, as Excel writes it) or a legacy single-byte
export, read as Windows-1252 (what "ANSI" exports from European POS systems mostly are) with a
warning. The first 64 KiB it saw also give the delimiter, so parsing is the only other read.
"""

from __future__ import annotations

import codecs
import csv as stdlib_csv
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 20
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
FALLBACK_ENCODING = "cp1252"


@dataclass(frozen=True)
class FileLook:
    """A file's size and modification time at one look: what must stay the same to settle."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileLook:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns)

    def text(self) -> str:
        """As the state store keeps it between runs."""
        return f"{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class FileFingerprint:
    """What one pass over a file learned."""

    path: Path
    sha256: str
    encoding: str
    """The codec the rows are decoded with (utf-8-sig drops a BOM)."""
    guessed_encoding: bool
    """True when the file was not UTF-8 and the fallback codec was chosen."""
    size: int
    """Bytes hashed: the size the file had when it was seen settled, appended rows excluded."""
    head: bytes = b""
    """The first bytes, for sniffing the delimiter."""
    undecodable: str | None = None
    """Where the file is not text in the chosen codec (`byte 0x90 at offset 125`); then unread.
    With `auto`, the codec is Windows-1252 and this says the file is not that either."""

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


def fingerprint(path: Path, encoding: str = "auto", size: int | None = None) -> FileFingerprint:
    """Hash the file and settle its encoding in one streaming pass.

    With `auto`: a UTF-16/32 byte-order mark, or the NUL byte in every other position that
    UTF-16 text without one has (Excel's "Unicode Text" export), picks that codec; otherwise
    UTF-8, else Windows-1252. A file that is none of these (a byte Windows-1252 does not
    define) is reported by `undecodable` rather than read as garbage. A codec the settings
    force is checked the same way, so a wrong one refuses the file before any row is captured.

    Args:
        path: the file.
        encoding: `auto`, or a codec name the settings force.
        size: bytes to read (the settled size); default the whole file.
    """
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    auto = encoding == "auto"
    other = codecs.getincrementaldecoder(FALLBACK_ENCODING if auto else encoding)()
    is_utf8, other_error = auto, ""
    left = size if size is not None else -1
    read = 0
    first = b""
    with path.open("rb") as fh:
        while left != 0 and (block := fh.read(BLOCK if left < 0 else min(BLOCK, left))):
            left -= len(block) if left > 0 else 0
            if not first:
                first = block[:SNIFF_BYTES]
            digest.update(block)
            if not other_error:
                try:
                    other.decode(block)
                except UnicodeDecodeError as exc:
                    other_error = f"byte 0x{block[exc.start]:02x} at offset {read + exc.start:,}"
                except UnicodeError as exc:  # e.g. `UTF-16 stream does not start with BOM`
                    other_error = str(exc)
            if is_utf8:
                try:
                    utf8.decode(block)
                except UnicodeDecodeError:
                    is_utf8 = False
            read += len(block)
        if is_utf8:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                is_utf8 = False
        if not other_error:
            try:
                other.decode(b"", final=True)
            except UnicodeError as exc:
                other_error = f"{exc} at the end of the file"
    guessed, undecodable = False, None
    if not auto:
        chosen = encoding
        undecodable = other_error or None
    elif (wide := _wide_unicode(first)) is not None:
        chosen = wide
    elif is_utf8:
        chosen = "utf-8-sig" if first.startswith(codecs.BOM_UTF8) else "utf-8"
    else:
        chosen, guessed = FALLBACK_ENCODING, True
        undecodable = other_error or None
    return FileFingerprint(path, digest.hexdigest(), chosen, guessed, read, first, undecodable)


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


def sniff_delimiter(head: bytes, encoding: str) -> str:
    """The delimiter of the file's first bytes among `, ; TAB |`; a comma when unsure."""
    sample = head.decode(encoding, errors="replace")
    if not sample.strip():
        return ","
    try:
        return stdlib_csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except stdlib_csv.Error:
        header = sample.splitlines()[0] if sample.splitlines() else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","
