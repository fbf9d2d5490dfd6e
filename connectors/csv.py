"""CSV files: offline conversions from POS exports, call tracking and spreadsheets.

Each row of each file the `path` setting names (a path or a glob) is one conversion: a record
id, a stage or conversion type (`stage_field`), a time, a client id and whatever params read.
The columns come from the mapping file, whose `csv:` block names the record id and time
columns, the time format and the time zone (see docs/csv.md); the connector gets them as the
`csv` layout of its `FetchSpec`.

A file is read only once it is complete by the `ready:` rule (see csv_ready.py). Its bytes are
hashed once (csv_files.py), then parsed once by Python's strict csv reader (csv_records.py) in
chunks (`chunk_rows`), so a large export never sits in memory whole; pandas would need a
second reader to learn which rows had too few or too many cells, and all cells are text here
anyway. Each chunk becomes one `TransitionPage`, captured in one transaction. A bad row (no
id, no stage, a time that cannot be placed in UTC, another cell count than the header's)
becomes a `RejectedRecord`
that names the file and the row number as a spreadsheet shows it (the header is row 1); the
other rows go on. Re-reading is harmless because a row's transition key is made of its record
id, stage and time; it is also cheap, because once every page of a file is committed the
connector stores the file's SHA-256 (with the mapping version) and skips that content from
then on. Editing the mapping makes files be read again, and the keys keep that from sending
anything twice. Rows carry no change stamp to poll by, so the connector ignores the
daemon's window; a backfill's explicit window (`--from/--to`) selects rows by their time.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from ga4sync.connectors.base import ApiUsage, ConnectorSettings
from ga4sync.connectors.catalog import CrmFields, StageVocabulary
from ga4sync.connectors.csv_cells import read_number
from ga4sync.connectors.csv_files import (
    FileFingerprint,
    FileLook,
    fingerprint,
    matching_files,
    sniff_delimiter,
)
from ga4sync.connectors.csv_ready import MARKER_SUFFIX, ReadyRule, marker_of, seen_key
from ga4sync.connectors.csv_records import CELL_LIMIT, Record, RecordReader, UnreadableRecord
from ga4sync.connectors.csv_time import TimeParser, TimeValueError, load_timezone
from ga4sync.connectors.salesforce_history import SnapshotLookup
from ga4sync.connectors.spec import CsvLayout, FetchSpec
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow, TransitionPage
from pydantic import Field, field_validator

MAX_RECORD_ID = 128
"""Longest record id the state store keys on."""


class CsvSettings(ConnectorSettings):
    """A folder (or file) of exports; what each column means comes from the mapping file."""

    type: Literal["csv"] = "csv"
    path: str = Field(
        min_length=1,
        description="File or glob of files, relative to the config file, e.g. "
        "`imports/pos-*.csv` or `calls/**/*.csv`.",
    )
    delimiter: str | None = Field(
        default=None,
        description="Column delimiter; default: detected among , ; TAB and |.",
    )
    encoding: str = Field(
        default="auto",
        description="`auto` (UTF-8 with or without BOM, else Windows-1252 with a warning) or "
        "a codec name such as latin-1.",
    )
    chunk_rows: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="Rows read and captured at a time (one transaction each).",
    )
    ready: ReadyRule = Field(
        default="settled",
        description="When a file is complete enough to read: `settled` (its size and "
        "modification time are unchanged since the previous run), `marker` (a file "
        "`NAME.done` exists next to it) or `renamed` (the exporter writes elsewhere and moves "
        "finished files into place, so a matching file is complete).",
    )
    decimal: Literal[".", ","] = Field(
        default=".",
        description="Decimal mark of number columns: `,` for exports like 1.234,56 (German, "
        "French...). With `.`, a value like 19,90 is refused rather than read as 1990.",
    )

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and v != "\\t" and len(v) != 1:
            raise ValueError("delimiter must be one character, e.g. `;` or `\\t` for TAB")
        if v is not None and v in '"\r\n\x00':
            raise ValueError("delimiter cannot be a quote or a line break; e.g. `;` or `\\t`")
        return "\t" if v == "\\t" else v

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str) -> str:
        import codecs

        if v != "auto":
            try:
                codecs.lookup(v)
                "a".encode(v)  # refuses codecs that are not text encodings (base64, rot13...)
            except LookupError:
                raise ValueError(
                    f"`{v}` is not a text encoding Python knows, e.g. utf-8, cp1252, utf-16"
                ) from None
        return v


class CsvConnector:
    """Reads conversion rows from files; the engine owns the loop, state and transactions."""

    detection: Literal["history", "snapshot", "file"] = "file"

    def __init__(
        self,
        settings: CsvSettings,
        *,
        spec: FetchSpec,
        base_dir: Path,
        done_lookup: SnapshotLookup | None = None,
    ) -> None:
        where = spec.origin
        if spec.csv is None:
            raise ConfigError(
                f"{where}: connector `{settings.name}` reads CSV files, so its mapping needs "
                "a `csv:` block naming record_id_column and time_column (see docs/csv.md)"
            )
        self.settings = settings
        self.name = settings.name
        self.object_type = spec.object_type
        self.usage = ApiUsage()
        self.warnings: list[str] = []
        self.base_dir = base_dir
        self.stage_field = spec.stage_field
        self.columns: CsvLayout = spec.csv
        self.record_fields = list(spec.record_fields)
        self.number_columns = list(spec.csv.number_columns)
        self.version = spec.version
        self.done_lookup = done_lookup
        self.times = TimeParser(
            column=self.columns.time_column,
            time_format=self.columns.time_format,
            zone=load_timezone(self.columns.timezone, where=where),
            zone_name=self.columns.timezone,
        )
        self.files_read = 0
        self.files_skipped = 0
        self._required = tuple(self.required_columns())
        """Checked on every row (NUL bytes), so worked out once."""

    def required_columns(self) -> list[str]:
        """Every column a row needs: the `csv:` block's and every field the mapping reads."""
        cols = [self.columns.record_id_column, self.columns.time_column, *self.record_fields]
        if self.columns.from_column:
            cols.append(self.columns.from_column)
        return list(dict.fromkeys(cols))

    def fetch_transitions(self, window: TimeWindow) -> Iterator[TransitionPage]:
        """Pages of rows from every matching file; files already imported are skipped.

        The daemon's window (no end) is ignored: a file is read whole until it is marked done.
        A backfill's window (with an end) keeps only rows timed inside [start, end) and never
        marks a file done, since rows outside the window were not captured.
        """
        files = matching_files(self.settings.path, self.base_dir)
        if not files:
            folder = Path(self.settings.path).expanduser()
            if (self.base_dir / folder).is_dir():
                self.warnings.append(
                    f"path `{self.settings.path}` is a folder; name the files in it, e.g. "
                    f"`{(folder / '*.csv').as_posix()}`"
                )
            else:
                self.warnings.append(f"no file matches path `{self.settings.path}`")
            return
        bounded = window if window.end is not None else None
        if self.settings.ready == "marker":
            files = [p for p in files if not p.name.endswith(MARKER_SUFFIX)]
        for path in files:
            shown = self._display(path)
            try:
                look = FileLook.of(path)
            except OSError as exc:
                self.warnings.append(f"{shown}: cannot read the file ({exc.strerror})")
                continue
            if look.size == 0:
                self.warnings.append(f"{shown}: the file is empty (still being written?)")
                continue
            waiting = self._not_ready(path, look, shown)
            if waiting is not None:
                if waiting.snapshots:
                    yield waiting
                continue
            try:
                fp = fingerprint(path, self.settings.encoding, size=look.size)
            except OSError as exc:
                self.warnings.append(f"{shown}: cannot read the file ({exc.strerror})")
                continue
            if bounded is None and self._already_imported(fp):
                self.files_skipped += 1
                continue
            if fp.undecodable is not None:
                yield self._file_rejected(fp, shown, self._undecodable_text(fp))
                continue
            if fp.guessed_encoding:
                self.warnings.append(
                    f"{shown}: not UTF-8; read as Windows-1252 (set `encoding:` in the "
                    "connector settings if that is wrong)"
                )
            self.files_read += 1
            yield from self._file_pages(fp, look, shown, bounded)

    def close(self) -> None:
        """Nothing stays open between pages: each file is closed when read."""

    def stage_vocabulary(self) -> StageVocabulary | None:
        """A file's stage column holds whatever was exported: no list to resolve labels by."""
        return None

    def field_catalog(self) -> CrmFields | None:
        """Columns are only known per file (each file's header is checked as it is read)."""
        return None

    def setup_warnings(self) -> list[str]:
        """A file has no setup to get wrong beyond what each read checks."""
        return []

    # -- one file ------------------------------------------------------------------------
    def _not_ready(self, path: Path, look: FileLook, shown: str) -> TransitionPage | None:
        """None when the file is complete by the `ready:` rule; else it waits for a later run.

        The page returned records this look (`settled`), so the next run can compare; it
        carries no rows. Without a state store to remember looks (`mappings preview`,
        `backfill --dry-run`), a file is read as it is now: those send nothing.
        """
        rule = self.settings.ready
        if rule == "marker" and not marker_of(path).exists():
            self.warnings.append(
                f"{shown}: waiting for {marker_of(path).name}, the marker the exporter writes "
                "when the file is complete (`ready: marker`)"
            )
            return TransitionPage(transitions=[], watermark=None)
        if rule != "settled" or self.done_lookup is None:
            return None
        key = seen_key(path)
        if self.done_lookup([key]).get(key) == look.text():
            return None
        self.warnings.append(
            f"{shown}: new or changed since the last run, so it may still be being written; "
            "it is read by the first run that finds it unchanged (`ready: settled`)"
        )
        return TransitionPage(transitions=[], watermark=None, snapshots={key: look.text()})

    def _undecodable_text(self, fp: FileFingerprint) -> str:
        if self.settings.encoding == "auto":
            return (
                f"not text in UTF-8, UTF-16 or Windows-1252 ({fp.undecodable}); export it "
                "as CSV UTF-8, or set `encoding:` in the connector settings"
            )
        return (
            f"cannot be read as {fp.encoding} ({fp.undecodable}); fix `encoding:` in the "
            "connector settings, or remove it to have the encoding detected"
        )

    def _already_imported(self, fp: FileFingerprint) -> bool:
        if self.done_lookup is None:
            return False
        return self.done_lookup([fp.done_key]).get(fp.done_key) == self.version

    def _display(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.base_dir.resolve()))
        except ValueError:
            return str(path)

    def _file_pages(
        self, fp: FileFingerprint, look: FileLook, shown: str, window: TimeWindow | None
    ) -> Iterator[TransitionPage]:
        delimiter = self.settings.delimiter or sniff_delimiter(fp.head, fp.encoding)
        chunk: list[Record] = []
        names: list[str] = []
        try:
            with RecordReader(
                fp.path, encoding=fp.encoding, delimiter=delimiter, size=fp.size
            ) as records:
                rows = iter(records)
                try:
                    header = next(rows, None)
                except UnreadableRecord as exc:
                    yield self._file_rejected(fp, shown, f"cannot read the header: {exc.problem}")
                    return
                names = [c.strip().lstrip("\ufeff").strip() for c in header.cells] if header else []
                problem = self._header_problem(names)
                if problem is not None:
                    yield self._file_rejected(fp, shown, problem)
                    return
                for record in rows:
                    chunk.append(record)
                    if len(chunk) >= self.settings.chunk_rows:
                        yield self._page(chunk, names, shown, window)
                        chunk = []
                if chunk:
                    yield self._page(chunk, names, shown, window)
                    chunk = []
        except UnreadableRecord as exc:
            # What was read is kept (keys make a later re-read harmless); the rest is named.
            if chunk:
                yield self._page(chunk, names, shown, window)
            cause = (
                f"a cell there is longer than {CELL_LIMIT:,} characters"
                if "field limit" in exc.problem
                else "a quoted value there probably has no closing quote"
            )
            yield self._file_rejected(
                fp,
                shown,
                f"row {exc.number} and everything after it could not be read ({exc.problem}); "
                f"{cause}",
            )
            return
        except OSError as exc:  # deleted or replaced while being read; read again next run
            self.warnings.append(f"{shown}: cannot read the file ({exc.strerror})")
            return
        if not self._unchanged(fp, look, records.sha256):
            self.warnings.append(
                f"{shown}: the file changed while it was read; it is read again on a later "
                "run (rows already captured are not sent twice)"
            )
            return
        if window is None:
            # Every page of this content is committed before this marker is.
            yield TransitionPage(
                transitions=[], watermark=None, snapshots={fp.done_key: self.version}
            )

    @staticmethod
    def _unchanged(fp: FileFingerprint, look: FileLook, parsed_sha256: str) -> bool:
        """The parsed bytes are the fingerprinted ones, and the file still looks as it did."""
        try:
            now = FileLook.of(fp.path)
        except OSError:
            return False
        return parsed_sha256 == fp.sha256 and now == look

    def _header_problem(self, names: list[str]) -> str | None:
        """Why the header cannot be used, or None; every such problem refuses the whole file."""
        if not any(names):
            return "cannot read the header: the file has no header line"
        if any("\x00" in name for name in names):
            return (
                "the header holds NUL bytes (character 0): the file is probably UTF-16; "
                "remove `encoding:` from the connector settings (UTF-16 is detected) or set "
                "it to utf-16"
            )
        missing = [c for c in self.required_columns() if c not in names]
        if missing:
            return self._missing_text(missing, names)
        twice = [c for c in self.required_columns() if names.count(c) > 1]
        if twice:
            return (
                f"column(s) {', '.join(f'`{c}`' for c in twice)} appear more than once in the "
                "header, so which one the mapping means is unclear; rename or remove the copy"
            )
        return None

    def _missing_text(self, missing: list[str], names: list[str]) -> str:
        parts = []
        for col in missing:
            close = difflib.get_close_matches(col, names, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            parts.append(f"`{col}`{hint}")
        return (
            f"column(s) {', '.join(parts)} named by the mapping are not in the header; the "
            f"header has: {', '.join(names) or '(nothing)'}"
        )

    def _file_rejected(self, fp: FileFingerprint, shown: str, reason: str) -> TransitionPage:
        reason = _storable(reason)
        self.warnings.append(f"{shown}: {reason}")
        rejected = RejectedRecord(
            connector=self.name,
            object_type=self.object_type,
            record_ref=f"{shown} (whole file)",
            reason=reason,
            raw={"file": shown, "sha256": fp.sha256},
        )
        return TransitionPage(transitions=[], watermark=None, rejected=[rejected])

    def _page(
        self, records: list[Record], names: list[str], shown: str, window: TimeWindow | None
    ) -> TransitionPage:
        transitions: list[StageTransition] = []
        rejected: list[RejectedRecord] = []
        for record in records:
            cells = [c.strip() for c in record.cells]
            if not any(cells):
                continue  # an empty line: nothing to send, nothing lost
            if len(cells) != len(names):
                rejected.append(self._miscounted(record, cells, names, shown))
                continue
            result = self._row(dict(zip(names, cells, strict=True)), record.number, shown)
            if isinstance(result, RejectedRecord):
                rejected.append(result)
            elif window is None or (
                window.start <= result.changed_at
                and (window.end is None or result.changed_at < window.end)
            ):
                transitions.append(result)
        return TransitionPage(transitions=transitions, watermark=None, rejected=rejected)

    def _miscounted(
        self, record: Record, cells: list[str], names: list[str], shown: str
    ) -> RejectedRecord:
        """A row whose cell count is not the header's: which cell is which is unknowable.

        An unquoted delimiter inside a value (`1,250.50` with commas between cells) shifts
        every later cell into the wrong column, and the shifted row can still look valid; a
        cut-short row lacks cells. Either way no cell of it can be trusted, empty or not.
        """
        if len(cells) > len(names):
            advice = (
                "a delimiter inside a value needs quotes (e.g. an amount written 1,250.50 in "
                "a comma-separated file), which shifts every cell after it"
            )
        else:
            advice = "the row is cut short or a delimiter is missing"
        labels = [n or f"cell {i + 1}" for i, n in enumerate(names)]
        labels += [f"cell {i + 1}" for i in range(len(names), len(cells))]
        return RejectedRecord(
            connector=self.name,
            object_type=self.object_type,
            record_ref=f"{shown} row {record.number}",
            reason=f"has {len(cells)} cells but the header has {len(names)}; {advice}",
            raw={label: _storable(cell) for label, cell in zip(labels, cells, strict=False)},
        )

    def _row(
        self, row: Mapping[str, str], number: int, shown: str
    ) -> StageTransition | RejectedRecord:
        """One row (as many cells as the header) -> a transition, or why it cannot be one."""
        ref = f"{shown} row {number}"

        def reject(reason: str) -> RejectedRecord:
            return RejectedRecord(
                connector=self.name,
                object_type=self.object_type,
                record_ref=ref,
                reason=reason,
                raw={k: _storable(v) for k, v in row.items()},
            )

        damaged = next((c for c in self._required if "\x00" in row.get(c, "")), None)
        if damaged is not None:
            # PostgreSQL cannot store a NUL byte, and no CRM id or stage holds one.
            return reject(
                f"column {damaged} holds a NUL byte (character 0); the export is damaged "
                "there, or the file is UTF-16 read with the wrong `encoding:`"
            )
        cols = self.columns
        record_id = row.get(cols.record_id_column, "")
        if not record_id:
            return reject(f"column {cols.record_id_column} (the record id) is empty")
        if len(record_id) > MAX_RECORD_ID:
            # Cut short, two ids could share a key and one row would vanish as a duplicate.
            return reject(
                f"column {cols.record_id_column} holds a {len(record_id)}-character record id; "
                f"at most {MAX_RECORD_ID} are accepted (is it the right column?)"
            )
        stage = row.get(self.stage_field, "")
        if not stage:
            return reject(f"column {self.stage_field} (the stage) is empty")
        when = row.get(cols.time_column, "")
        if not when:
            return reject(f"column {cols.time_column} (the time) is empty")
        try:
            changed_at = self.times.parse(when)
        except TimeValueError as exc:
            return reject(str(exc))
        fields = {f: (row.get(f) or None) for f in self.record_fields}
        for col in self.number_columns:
            text = fields.get(col)
            if text is None:
                continue
            normalized = read_number(text, self.settings.decimal)
            if normalized is None and self.settings.decimal == ",":
                return reject(
                    f"column {col} holds {text[:30]!r}, not a number written with a decimal "
                    'comma like 1.234,56 (the connector sets `decimal: ","`, so a dot only '
                    "groups thousands)"
                )
            if normalized is None:
                return reject(
                    f"column {col} holds {text[:30]!r}, which reads as a decimal comma; set "
                    '`decimal: ","` in the connector settings if the file writes 19,90'
                )
            fields[col] = normalized
        from_value = row.get(cols.from_column) or None if cols.from_column else None
        return StageTransition(
            connector=self.name,
            object_type=self.object_type,
            record_id=record_id,
            field=self.stage_field,
            from_value=from_value,
            to_value=stage,
            changed_at=changed_at,
            detected_by="file",
            fields=fields,
            source_ref=ref,
        )


def _storable(text: str) -> str:
    """Text the state store can keep: PostgreSQL refuses NUL bytes."""
    return text.replace("\x00", "\ufffd")
