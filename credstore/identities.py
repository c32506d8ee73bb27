"""Synthetic identities: credit codes, resident ID numbers, people's and companies' names.

Each builder takes the caller's `random.Random`, so the whole dataset follows from one seed.
Codes are built valid by construction (not drawn and filtered): a USCC gets a GB 11714
organization code with its own check character, then the GB 32100 check character; an ID
number gets a real province and birth date, then the GB 11643 check character. The tests
verify both with credcore's independent validators.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from credcore.codes import org_code_check_char, resident_id_check_char, uscc_check_char
from credstore.vocab import (
    COOP_KINDS,
    GIVEN_CHARS,
    INDUSTRIES,
    ROADS,
    SCHOOL_KINDS,
    SHOP_KINDS,
    SURNAMES,
    TRADE_CHARS,
    Division,
)

# Characters allowed in an organization-code body that are also legal in a USCC (the USCC
# alphabet has no I, O, S, V, Z), so the inner code never makes the outer one malformed.
_ORG_BODY_LETTERS = "ABCDEFGHJKLMNPQRTUWXY"
_DIGITS = "0123456789"


def org_body(rng: random.Random, *, prefix: str = "") -> str:
    """An 8-character GB 11714 body: all digits (older codes) or `prefix` plus code characters."""
    if prefix:
        alphabet = _DIGITS + _ORG_BODY_LETTERS
        return prefix + "".join(rng.choice(alphabet) for _ in range(8 - len(prefix)))
    return "".join(rng.choice(_DIGITS) for _ in range(8))


def make_uscc(authority: str, entity_type: str, division: str, body: str) -> str:
    """A USCC from its parts, with the inner (GB 11714) and outer (GB 32100) check characters."""
    first17 = authority + entity_type + division + body + org_code_check_char(body)
    return first17 + uscc_check_char(first17)


def entity_uscc(rng: random.Random, authority: str, entity_type: str, division: str) -> str:
    """A subject's code; since 2015 most new bodies start with MA, as real ones do."""
    prefix = "MA" if rng.random() < 0.55 else ""
    return make_uscc(authority, entity_type, division, org_body(rng, prefix=prefix))


def authority_uscc(name: str, division: str) -> str:
    """The code of a government body (authority 1, type 1: 机关), stable for a given name.

    Seeded by the name alone, not the dataset seed, so an authority keeps its code across
    datasets, as a real one would.
    """
    return make_uscc("1", "1", division, org_body(random.Random(name), prefix="MB"))


def person_name(rng: random.Random) -> str:
    given = rng.choice(GIVEN_CHARS)
    if rng.random() < 0.7:
        given += rng.choice(GIVEN_CHARS)
    return rng.choice(SURNAMES) + given


def resident_id(rng: random.Random, division: str) -> str:
    """A GB 11643 number born in `division` (a real province), aged 25-70 in 2025."""
    born = date(1955, 1, 1) + timedelta(days=rng.randrange(45 * 365))
    first17 = division + born.strftime("%Y%m%d") + f"{rng.randrange(1, 1000):03d}"
    return first17 + resident_id_check_char(first17)


def trade_name(rng: random.Random) -> str:
    """A two-character 字号 (trade name) from auspicious characters."""
    first, second = rng.sample(TRADE_CHARS, 2)
    return first + second


def _city(division: Division) -> str:
    """The city part of a division's local prefix (深圳市南山区 → 深圳); names lead with it."""
    return division.local.split("市", 1)[0]


def _district(division: Division) -> str:
    """The district part (深圳市南山区 → 南山区), or the whole of a county-level city (昆山市)."""
    return division.local.split("市", 1)[1] or division.local


def company_name(rng: random.Random, division: Division, entity_type: str) -> str:
    """A name in the registered form 行政区划 + 字号 + 行业 + 组织形式 for the entity type."""
    if entity_type == "individual_business":
        return _district(division) + person_name(rng)[0] + "记" + rng.choice(SHOP_KINDS)
    if entity_type == "farmers_cooperative":
        return division.local + trade_name(rng) + rng.choice(COOP_KINDS) + "专业合作社"
    if entity_type == "social_organization":
        return _city(division) + "市" + trade_name(rng) + rng.choice(SCHOOL_KINDS)
    form = rng.choices(("有限公司", "股份有限公司", "有限责任公司"), weights=(80, 10, 10))[0]
    # Both 深圳市鑫源… and 深圳鑫源… are registered forms; keep the mix.
    city = _city(division) + ("市" if rng.random() < 0.5 else "")
    return city + trade_name(rng) + rng.choice(INDUSTRIES) + form


def address(rng: random.Random, division: Division) -> str:
    road = rng.choice(ROADS)
    number = rng.randint(1, 999)
    room = f"{rng.randint(1, 12)}幢{rng.randint(1, 20)}{rng.randint(1, 12):02d}室"
    return f"{division.province}{division.local}{road}{number}号{room}"
