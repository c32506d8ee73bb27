"""Readers for record sources: JSON Lines and CSV files (URLs are in consistency.remote).

Every reader yields batches of items `(line, payload, location)`:

- `line`: the 1-based physical line the record starts on (for paged URL feeds: its position);
- `payload`: the line's UTF-8 bytes (JSON Lines), a record dict (CSV, paged feeds) or a
  `BadLine` (the line cannot be decoded);
- `location`: the byte offset of `payload` in the file when `payload` is exactly the file's
  bytes, so the authority index can read the line again instead of keeping it; -1 otherwise.

Files are read in a stream; stray BOMs, CRLF line ends and blank lines are skipped. The encoding
is UTF-8 (BOM or not) or GB18030: given with `--encoding`, else detected when the first 64 KiB
tell (a BOM, valid UTF-8, else valid GB18030).
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from consistency.errors import SourceError
from consistency.records import HeaderMap
from consistency.rules import BadLine

Item = tuple[int, "bytes | dict[str, Any] | BadLine", int]
BATCH = 2000
_BOM = codecs.BOM_UTF8
_SAMPLE = 1 << 16


class Source(Protocol):
    """Anything that yields batches of items; `label` names it in messages."""

    label: str
    path: str | None

    def batches(self) -> AsyncIterator[list[Item]]: ...


def canonical_encoding(name: str) -> str:
    """`utf-8`, `gb18030` or another codec's canonical name; SourceError if unknown."""
    try:
        found = codecs.lookup(name).name
    except LookupError:
        raise SourceError(f"unknown encoding {name!r}") from None
    return "utf-8" if found in ("utf-8", "utf-8-sig") else found


def detect_encoding(sample: bytes) -> str:
    """The encoding a sample unambiguously has: a BOM or valid UTF-8 -> UTF-8; else GB18030."""
    if sample.startswith(_BOM):
        return "utf-8"
    for encoding in ("utf-8", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            decoder.decode(sample, final=False)  # a character cut at the sample's end is fine
            return encoding
        except UnicodeDecodeError:
            continue
    return "utf-8"  # neither: read as UTF-8 and let each bad line be reported


def _looks_like_csv(path: str, sample: bytes) -> bool:
    lowered = path.lower()
    if lowered.endswith((".csv", ".tsv")):
        return True
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return False
    body = sample.lstrip(_BOM).lstrip()
    return not body.startswith(b"{")


class FileSource:
    """A local JSON Lines or CSV file."""

    def __init__(self, path: str, *, encoding: str | None = None,
                 fmt: str | None = None) -> None:
        self.path: str | None = path
        self.file = path
        self.label = path
        try:
            with open(path, "rb") as handle:
                sample = handle.read(_SAMPLE)
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self.encoding = canonical_encoding(encoding) if encoding else detect_encoding(sample)
        self.format = fmt or ("csv" if _looks_like_csv(path, sample) else "jsonl")
        self.size = os.path.getsize(path)

    async def batches(self) -> AsyncIterator[list[Item]]:
        reader = self._csv() if self.format == "csv" else self._jsonl()
        for batch in reader:
            yield batch

    def _jsonl(self) -> Iterator[list[Item]]:
        utf8 = self.encoding == "utf-8"
        batch: list[Item] = []
        offset = 0
        try:
            with open(self.file, "rb") as handle:
                for number, raw in enumerate(handle, 1):
                    start = offset
                    offset += len(raw)
                    body = raw.rstrip(b"\r\n")
                    if body.startswith(_BOM):  # a stray BOM, e.g. where two files were joined
                        body = body[3:]
                        start += 3
                    if not body.strip():
                        continue
                    if utf8:
                        batch.append((number, body, start))
                    else:
                        batch.append((number, _recode(body, self.encoding), -1))
                    if len(batch) >= BATCH:
                        yield batch
                        batch = []
        except OSError as exc:
            raise SourceError(f"{self.file}: cannot read: {exc.strerror or exc}") from None
        if batch:
            yield batch

    def _csv(self) -> Iterator[list[Item]]:
        bad: list[tuple[int, str]] = []
        try:
            with open(self.file, "rb") as handle:
                lines = _decoded_lines(handle, self.encoding, bad)
                yield from _csv_batches(lines, bad, self.label)
        except OSError as exc:
            raise SourceError(f"{self.file}: cannot read: {exc.strerror or exc}") from None


def _recode(body: bytes, encoding: str) -> bytes | BadLine:
    try:
        return body.decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        return BadLine(f"the line is not valid {encoding}")


def _decoded_lines(handle: Any, encoding: str, bad: list[tuple[int, str]]) -> Iterator[str]:
    """Physical lines decoded one by one, so one bad line costs only itself: it is recorded in
    `bad` and read as an empty line (which the CSV reader skips)."""
    for number, raw in enumerate(handle, 1):
        if number == 1 or raw.startswith(_BOM):
            raw = raw.removeprefix(_BOM)
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError:
            bad.append((number, f"the line is not valid {encoding}"))
            yield "\n"


def _csv_batches(lines: Iterator[str], bad: list[tuple[int, str]],
                 label: str) -> Iterator[list[Item]]:
    reader = csv.reader(lines)
    header: HeaderMap | None = None
    width = 0
    batch: list[Item] = []
    previous_end = 0
    try:
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            while bad:
                number, reason = bad.pop(0)
                batch.append((number, BadLine(reason), -1))
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, width = HeaderMap(row), len(row)
                _check_header(header, label)
                continue
            if len(row) > width:
                batch.append((start, BadLine(f"the row has {len(row)} cells, the header "
                                             f"{width}"), -1))
            else:
                batch.append((start, header.record(row), -1))
            if len(batch) >= BATCH:
                yield batch
                batch = []
    except csv.Error as exc:
        batch.append((previous_end + 1, BadLine(f"not valid CSV ({exc})"), -1))
    batch.extend((number, BadLine(reason), -1) for number, reason in bad)
    if batch:
        yield batch


def _check_header(header: HeaderMap, label: str) -> None:
    fields = set(filter(None, header.fields))
    for needed, names in (("uscc", "统一社会信用代码 / CF_XDR_SHXYM"),
                          ("decision_number", "行政处罚决定书文号 / CF_WSH / XK_WSH")):
        if needed not in fields:
            raise SourceError(f"{label}: the CSV header has no {needed} column ({names})")
    if header.kind is None and "kind" not in fields:
        raise SourceError(f"{label}: cannot tell whether the CSV holds penalties or licences: "
                          "add a kind column or use the standard's headers")


def open_source(spec: str, *, encoding: str | None = None, **http: Any) -> Source:
    """A source from a command-line SRC: an http(s) URL or a file path."""
    if spec.startswith(("http://", "https://")):
        from consistency.remote import HttpSource

        return HttpSource(spec, encoding=encoding, **http)
    if "://" in spec:
        raise SourceError(f"{spec}: only file paths and http(s) URLs are sources")
    return FileSource(spec, encoding=encoding)
