"""A simulated credit service agency: what it shows, derived from the authority's feed.

The demo serves it next to the store so that `credgate consistency check` has something real to
find. The mirror shows every record the authority discloses on `as_of`, the way agencies do
(without the lifecycle fields they need not show, and never the representative's ID number),
with four realistic discrepancies, each on one record chosen by `seed`:

- a repaired record still shown long after its removal   -> shown_after_removal;
- a fine changed                                          -> content_mismatch;
- a record still shown long after its disclosure ended    -> shown_after_expiry;
- a record written differently but meaning the same: date 2025年3月5日, brackets （）, the fine in
  元, a trailing ideographic space in the name            -> no finding at all.

"Long after" is 20 calendar days, more than any 3-working-day grace can stretch to, so the
findings do not depend on the holiday calendar. Pure: the same records, seed and date give the
same snapshot.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from credcore.clock import CST

Record = dict[str, Any]

_NOT_SHOWN = ("status", "removed_at", "disclosure_start", "legal_representative_id_number")
_WELL_PAST = timedelta(days=20)


def _removed_day(record: Record) -> date | None:
    removed = record.get("removed_at")
    if not removed:
        return None
    return datetime.fromisoformat(str(removed).replace("Z", "+00:00")).astimezone(CST).date()


def _end_day(record: Record) -> date | None:
    end = record.get("disclosure_end")
    return date.fromisoformat(end) if end else None


def _disclosed_on(record: Record, day: date) -> bool:
    removed, end = _removed_day(record), _end_day(record)
    start = record.get("disclosure_start")
    if removed is not None and removed < day:  # removed today: agencies catch up within grace
        return False
    if end is not None and end < day:
        return False
    return not (start and date.fromisoformat(str(start)[:10]) > day)


def _shown(record: Record) -> Record:
    return {name: value for name, value in record.items() if name not in _NOT_SHOWN}


def _reformatted(record: Record) -> Record:
    """The same record in another spelling: equal after the checker's normalization."""
    out = _shown(record)
    decided = date.fromisoformat(out["decision_date"])
    out["decision_date"] = f"{decided.year}年{decided.month}月{decided.day}日"
    out["decision_number"] = out["decision_number"].replace("〔", "（").replace("〕", "）")
    yuan = Decimal(repr(out["fine_amount"])) * 10_000
    out["fine_amount"] = f"{yuan.normalize():f}元"
    out["subject_name"] = out["subject_name"] + "\u3000"
    return out


def make_agency_snapshot(
    authority_records: list[Record], *, seed: int, as_of: date
) -> list[Record]:
    """The agency's records on `as_of`, with the four discrepancies described above."""
    rng = random.Random(seed)
    disclosed = [r for r in authority_records if _disclosed_on(r, as_of)]
    fined = [r for r in disclosed if r.get("kind") == "penalty"
             and isinstance(r.get("fine_amount"), int | float) and r["fine_amount"] > 0
             and "〔" in str(r.get("decision_number", ""))]
    repaired = [r for r in authority_records if r.get("status") == "repaired"
                and (day := _removed_day(r)) is not None and day <= as_of - _WELL_PAST
                and (_end_day(r) is None or _end_day(r) > day)]  # type: ignore[operator]
    expired = [r for r in authority_records if r.get("status") == "disclosed"
               and (end := _end_day(r)) is not None and end <= as_of - _WELL_PAST]
    changed: dict[int, Record] = {}
    extra: list[Record] = []
    picks = rng.sample(fined, k=min(2, len(fined)))
    if picks:
        record = picks[0]
        wrong = _shown(record)
        wrong["fine_amount"] = round(float(record["fine_amount"]) + 0.5, 4)
        changed[id(record)] = wrong
    if len(picks) > 1:
        changed[id(picks[1])] = _reformatted(picks[1])
    for pool in (repaired, expired):
        if pool:
            extra.append(_shown(rng.choice(pool)))
    snapshot = [changed.get(id(r)) or _shown(r) for r in disclosed]
    return snapshot + extra


def serve_mirror_app(records: list[Record]) -> web.Application:
    """An aiohttp app serving the snapshot as JSON Lines at GET /agency.jsonl."""
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")

    async def agency(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/x-ndjson", charset="utf-8")

    app = web.Application()
    app.router.add_get("/agency.jsonl", agency)
    return app
