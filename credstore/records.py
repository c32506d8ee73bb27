"""Disclosure records (CONTRACTS section 5): penalties, licences and list entries.

A record is drafted for one entity with everything but its decision number and record id;
`finalize` then orders all drafts by decision date and numbers them, so that decision numbers
rise with time within each authority and year, as a real docket does, and every
`(kind, uscc, decision_number)` key is unique.

Disclosure periods follow DOMAIN.md (国办发〔2025〕22号): minor at most 3 months, ordinary 3
months to 1 year, serious 1 to 3 years, counted from the decision date. Licences have no
scheduled end. Removal (repair, withdrawal) always happens on or before the reference date, and
severe penalties (suspension, licence revocation) are never repaired early.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from credcore.clock import CST
from credstore import penalties
from credstore.identities import authority_uscc
from credstore.vocab import AGENCIES, LICENCES, LISTS, Division

Record = dict[str, Any]

COMMON_FIELDS = (
    "record_id", "kind", "uscc", "subject_name", "decision_number", "authority",
    "authority_uscc", "decision_date", "disclosure_start", "disclosure_end", "status",
    "removed_at",
)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "penalty": penalties.FIELDS,
    "licence": (
        "licence_category", "licence_name", "licence_number", "licence_content", "valid_from",
        "valid_until",
    ),
    "serious_untrustworthy": ("list_name", "listing_reason"),
}
# Personal data the store carries and the gateway must strip (CF_FRDB, CF_FR_ZJHM).
REPRESENTATIVE_FIELDS = ("legal_representative", "legal_representative_id_number")
_ID_PREFIX = {"penalty": "CF", "licence": "XK", "serious_untrustworthy": "SX"}
_INDEFINITE = "2099-12-31"  # the standard's way of writing "valid indefinitely"


@dataclass
class Draft:
    """A record waiting for its number: `prefix` is its docket, e.g. 沪浦市监罚."""

    record: Record
    prefix: str


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clipped to the month's end (31 January + 1 → 28 February)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for dom in (day.day, 30, 29, 28):
        try:
            return date(year, month, dom)
        except ValueError:
            continue
    raise ValueError(f"no valid day for {day} + {months} months")  # unreachable: day 28 exists


def period_end(decision: date, months: int) -> date:
    """The last day of a period of `months` that starts on the decision date."""
    return add_months(decision, months) - timedelta(days=1)


def authority(division: Division, agency_key: str) -> tuple[str, str]:
    """An authority's name and code; tax offices are branches of the State Taxation
    Administration (国家税务总局), so their names start with it."""
    agency = AGENCIES[agency_key]
    prefix = "国家税务总局" if agency_key == "tax" else ""
    name = prefix + division.local + agency.suffix
    return name, authority_uscc(name, division.code)


def _removed_at(rng: random.Random, first: date, last: date) -> str | None:
    """A working-hours CST timestamp on a day in [first, last], or None when the range is empty."""
    if last < first:
        return None
    day = first + timedelta(days=rng.randint(0, (last - first).days))
    moment = time(rng.randint(9, 17), rng.randint(0, 59), rng.randint(0, 59))
    return datetime.combine(day, moment, tzinfo=CST).isoformat()


def _lifecycle(
    rng: random.Random, start: date, end: date | None, reference: date, *,
    p_repair: float, p_withdraw: float, repair_after_months: int | None,
) -> tuple[str, str | None]:
    """Status and removed_at. Repair comes after its minimum period, withdrawal soon after."""
    roll = rng.random()
    if roll < p_withdraw:
        last = min(reference, start + timedelta(days=120))
        removed = _removed_at(rng, start + timedelta(days=3), last)
        if removed:
            return "withdrawn", removed
    elif roll < p_withdraw + p_repair and repair_after_months is not None:
        last = reference if end is None else min(reference, end - timedelta(days=1))
        removed = _removed_at(rng, add_months(start, repair_after_months), last)
        if removed:
            return "repaired", removed
    return "disclosed", None


def _common(
    rng: random.Random, kind: str, entity: Record, division: Division, agency_key: str,
    decision: date, reference: date,
) -> Record:
    name, code = authority(division, agency_key)
    return {
        "record_id": None, "kind": kind, "uscc": entity["uscc"], "subject_name": entity["name"],
        "decision_number": None, "authority": name, "authority_uscc": code,
        "decision_date": decision.isoformat(),
        # Published within 7 days of the decision, and never after the reference date.
        "disclosure_start": min(decision + timedelta(days=rng.randint(0, 7)), reference),
    }


def _finish(record: Record, end: date | None, status: str, removed_at: str | None) -> None:
    # `_common` leaves disclosure_start a date so the lifecycle can count from it; now it
    # becomes the contract's string like every other date.
    record["disclosure_start"] = record["disclosure_start"].isoformat()
    record["disclosure_end"] = end.isoformat() if end else None
    record["status"] = status
    record["removed_at"] = removed_at


def _docket(division: Division, agency_key: str, act: str) -> str:
    """A decision-number prefix: place, authority, act (罚 penalty, 许 licence, 列 listing)."""
    return division.abbr + AGENCIES[agency_key].abbr + act


def _with_representative(record: Record, entity: Record) -> Record:
    for field in REPRESENTATIVE_FIELDS:
        record[field] = entity[field]
    return record


def penalty(
    rng: random.Random, entity: Record, division: Division, reference: date, *,
    anchor: bool = False,
) -> Draft:
    """A penalty; an `anchor` is recent, serious and disclosed for three years (sample_uscc)."""
    ago = rng.randint(20, 60) if anchor else int(rng.triangular(1, 4 * 365, 1))
    decision = reference - timedelta(days=ago)
    content = penalties.draw(rng, decision, severity="serious" if anchor else None)
    record = _common(rng, "penalty", entity, division, content.agency, decision, reference)
    months = 36 if anchor else penalties.disclosure_months(rng, content.severity)
    end = period_end(decision, months)
    status, removed = ("disclosed", None) if anchor else _lifecycle(
        rng, record["disclosure_start"], end, reference, p_repair=0.4, p_withdraw=0.05,
        repair_after_months=penalties.repair_after_months(content),
    )
    _finish(record, end, status, removed)
    record.update(content.fields())
    return Draft(_with_representative(record, entity), _docket(division, content.agency, "罚"))


def licence(rng: random.Random, entity: Record, division: Division, reference: date) -> Draft:
    kind = rng.choice(LICENCES)
    decision = reference - timedelta(days=int(rng.triangular(1, 6 * 365, 1)))
    record = _common(rng, "licence", entity, division, kind.agency, decision, reference)
    status, removed = _lifecycle(
        rng, record["disclosure_start"], None, reference, p_repair=0.0, p_withdraw=0.05,
        repair_after_months=None,
    )
    _finish(record, None, status, removed)
    until = period_end(decision, 12 * kind.years).isoformat() if kind.years else _INDEFINITE
    number = _licence_number(rng, kind.number_style, entity["uscc"], division, decision, until)
    record.update({
        "licence_category": kind.category, "licence_name": kind.licence_name,
        "licence_number": number, "licence_content": kind.content,
        "valid_from": decision.isoformat(), "valid_until": until,
    })
    return Draft(_with_representative(record, entity), _docket(division, kind.agency, "许"))


def _licence_number(
    rng: random.Random, style: str, uscc: str, division: Division, decision: date, until: str,
) -> str:
    """A certificate number in the issuing system's own format (JY… for food business, …)."""
    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    year = decision.year
    formats = {
        "JY": lambda: f"JY1{division.code}{digits(7)}",
        "PW": lambda: f"{uscc}00{rng.randint(1, 3)}{rng.choice('VUWX')}",
        "DY": lambda: f"交运管许可{division.abbr}字{division.code}{digits(6)}号",
        "AX": lambda: f"（{division.abbr[0]}）JZ安许证字〔{year}〕{digits(6)}",
        "RQ": lambda: f"{division.abbr}燃经字〔{year}〕第{digits(4)}号",
        "CMA": lambda: f"{year % 100:02d}{division.code[:2]}{digits(8)}",
        "TS": lambda: f"TS{digits(7)}-{until[:4]}",
        "YZ": lambda: uscc,  # a business licence's number is the credit code itself
        "WS": lambda: f"{division.abbr}卫公字〔{year}〕第{division.code}{digits(4)}号",
    }
    return formats[style]()


def list_entry(rng: random.Random, entity: Record, division: Division, reference: date) -> Draft:
    kind = rng.choice(LISTS)
    decision = reference - timedelta(days=int(rng.triangular(1, 4 * 365, 1)))
    record = _common(
        rng, "serious_untrustworthy", entity, division, kind.agency, decision, reference
    )
    end = period_end(decision, 12 * kind.years) if kind.years else None
    status, removed = _lifecycle(
        rng, record["disclosure_start"], end, reference, p_repair=0.3, p_withdraw=0.04,
        repair_after_months=12 if kind.years is None or kind.years >= 3 else 6,
    )
    _finish(record, end, status, removed)
    facts = penalties.listing_facts(rng, decision)
    record.update({"list_name": kind.list_name, "listing_reason": kind.reason.format(**facts)})
    return Draft(_with_representative(record, entity), _docket(division, kind.agency, "列"))


def finalize(rng: random.Random, drafts: list[Draft]) -> list[Record]:
    """Order drafts by decision date (then drafting order) and give each its number and id."""
    ordered = sorted(enumerate(drafts), key=lambda item: (item[1].record["decision_date"], item[0]))
    dockets: dict[tuple[str, str], int] = {}
    serials = dict.fromkeys(_ID_PREFIX, 0)
    records: list[Record] = []
    for _, draft in ordered:
        record = draft.record
        docket = (draft.prefix, record["decision_date"][:4])
        dockets[docket] = dockets.get(docket, rng.randint(0, 300)) + rng.randint(1, 9)
        record["decision_number"] = f"{draft.prefix}〔{docket[1]}〕{dockets[docket]}号"
        serials[record["kind"]] += 1
        record["record_id"] = f"{_ID_PREFIX[record['kind']]}-{serials[record['kind']]:06d}"
        records.append(record)
    return records
