"""Orchestration: read the authority feed into the index, then judge each agency in turn.

The authority is read first and whole (a malformed line stops everything: without a sound
authority no finding can be trusted). Agencies are then streamed one after another; an agency
whose source cannot be read is reported unavailable and the others still run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from consistency.errors import AuthorityFeedError, SourceError
from consistency.index import AuthorityIndex, LineStore
from consistency.records import RecordProblem, loads_line
from consistency.report import AgencyResult, Report
from consistency.rules import AgencyCheck, BadLine
from consistency.sources import FileSource, Source, open_source

Progress = Callable[[str, int], None]


def _source(spec: str | Source, encoding: str | None, http: dict[str, Any]) -> Source:
    return open_source(spec, encoding=encoding, **http) if isinstance(spec, str) else spec


async def load_authority(source: Source, as_of: dt.datetime, *,
                         progress: Progress | None = None) -> AuthorityIndex:
    """The index of the authority's feed; AuthorityFeedError names the source and line."""
    local = isinstance(source, FileSource) and source.format == "jsonl" and (
        source.encoding == "utf-8")
    store = LineStore(source.path if local else None)
    index = AuthorityIndex(as_of, store)
    try:
        async for batch in source.batches():
            for line, payload, location in batch:
                _add(index, source.label, line, payload, location)
            if progress:
                progress(source.label, len(batch))
    except BaseException:
        store.close()
        raise
    return index


def _add(index: AuthorityIndex, label: str, line: int,
         payload: bytes | dict[str, Any] | BadLine, location: int) -> None:
    if isinstance(payload, BadLine):
        raise AuthorityFeedError(f"authority feed {label}: line {line}: {payload.reason}")
    if type(payload) is bytes:
        try:
            record = loads_line(payload)
        except UnicodeDecodeError:
            raise AuthorityFeedError(
                f"authority feed {label}: line {line}: not valid UTF-8") from None
        except ValueError as exc:
            raise AuthorityFeedError(
                f"authority feed {label}: line {line}: not valid JSON ({exc})") from None
        data = payload
    else:
        record = payload
        data = json.dumps(record, ensure_ascii=False).encode("utf-8")
    if location < 0:
        location = index.store.spool(data)
    try:
        index.add(line, record, location, len(data))
    except RecordProblem as problem:
        raise AuthorityFeedError(f"authority feed {label}: line {line}: {problem}") from None


async def check_agency(name: str, source: Source, index: AuthorityIndex,
                       grace_working_days: int, *,
                       progress: Progress | None = None) -> AgencyResult:
    """One agency's findings; a source that fails is reported unavailable, not raised."""
    result = AgencyResult(name=name, source=source.label)
    check = AgencyCheck(name, index, grace_working_days)
    feed, feed_line = check.feed, check.feed_line
    try:
        async for batch in source.batches():
            for line, payload, _ in batch:
                if type(payload) is bytes:
                    feed_line(line, payload)  # the hot path, without the dispatch
                else:
                    feed(line, payload)
            if progress:
                progress(name, len(batch))
    except SourceError as exc:
        result.unavailable = exc.description
        result.records = check.records
        return result
    result.findings = check.finish()
    result.records = check.records
    return result


async def run_check(authority: str | Source, agencies: Sequence[tuple[str, str | Source]],
                    as_of: dt.datetime, grace_working_days: int = 3, *,
                    encoding: str | None = None, http: dict[str, Any] | None = None,
                    progress: Progress | None = None) -> Report:
    """Check every agency against the authority's feed as of `as_of`.

    `encoding` applies to agency files (the authority's feed is UTF-8 by contract); `http` holds
    options for URL sources (attempts, backoff, timeout).
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    if grace_working_days < 0:
        raise ValueError("the grace period cannot be negative")
    options = dict(http or {})
    authority_source = _source(authority, None, options)
    index = await load_authority(authority_source, as_of, progress=progress)
    results: list[AgencyResult] = []
    try:
        for name, spec in agencies:
            try:
                source = _source(spec, encoding, options)
            except SourceError as exc:
                label = spec if isinstance(spec, str) else spec.label
                results.append(AgencyResult(name=name, source=label, unavailable=exc.description))
                continue
            results.append(await check_agency(name, source, index, grace_working_days,
                                              progress=progress))
    finally:
        index.store.close()
    return Report(as_of=as_of, grace_working_days=grace_working_days,
                  authority_source=authority_source.label,
                  authority_records=len(index) + len(index.duplicates),
                  agencies=results, authority_duplicates=index.duplicates)
