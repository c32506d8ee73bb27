"""Unified Social Credit Codes in /v1 paths, pinned by ../shared/data/uscc-codes.json: a
malformed code is 400 invalid_uscc (audited), a well-formed one goes on to the store."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from credcore.codes import USCC_ALPHABET

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "shared" / "data" / "uscc-codes.json").read_text())
VALID = [item["code"] for item in VECTORS["valid"]]
KINDS = ("", "/penalties", "/licences", "/recognitions")


def wrong_check_characters() -> list[str]:
    return [code[:17] + c for code in VALID for c in USCC_ALPHABET if c != code[17]]


def excluded_letters() -> list[str]:
    # Each excluded letter in the body and as the check character.
    return [code[:i] + letter + code[i + 1:] for code in VALID[:2] for letter in "IOSVZ" for i in (3, 10, 17)]


def wrong_lengths() -> list[str]:
    code = VALID[0]
    return [code[:1], code[:17], code + "0", code + code]


async def assert_invalid_uscc(harness: Any, token: str, codes: list[str]) -> None:
    async def one(path: str) -> None:
        resp = await harness.get(path, token)
        body = await resp.json()
        assert resp.status == 400, (path, body)
        assert body["error"] == "invalid_uscc" and body["error_description"].endswith("."), body
        assert "Audit-Entry" in resp.headers

    paths = [f"/v1/entities/{code}{kind}" for code in codes for kind in KINDS]
    for start in range(0, len(paths), 64):  # concurrently, as operators would send them
        await asyncio.gather(*(one(path) for path in paths[start:start + 64]))


def test_vectors_are_what_they_say() -> None:
    """The shared file's invalid codes are each refused for the reason it gives."""
    from credcore.codes import uscc_problem

    reasons = {"wrong check character": "check character", "17 characters": "18 characters",
               "letters I O Z S V are not in the alphabet": "without I, O, S, V, Z"}
    for item in VECTORS["invalid"]:
        problem = uscc_problem(item["code"])
        assert problem is not None and reasons[item["why"]] in problem, item
    assert all(uscc_problem(code) is None for code in VALID)


async def test_shared_invalid_codes_are_refused(gateway: Any) -> None:
    """Every invalid code of the shared file answers 400 invalid_uscc on every entity path."""
    token = await gateway.token("op")
    await assert_invalid_uscc(gateway, token, [item["code"] for item in VECTORS["invalid"]])


@pytest.mark.parametrize("make_codes", [wrong_check_characters, excluded_letters, wrong_lengths],
                         ids=["wrong_check_character", "excluded_letters", "wrong_length"])
async def test_malformed_codes_are_refused(gateway: Any, make_codes: Any) -> None:
    """Wrong check characters, the letters I O S V Z and wrong lengths are 400 invalid_uscc."""
    codes = make_codes()
    assert codes
    await assert_invalid_uscc(gateway, await gateway.token("op"), codes)


async def test_refusal_names_no_subject_and_releases_nothing(gateway: Any) -> None:
    """The entry of a refused code is a deny with no subject code and no fields released."""
    token = await gateway.token("op")
    resp = await gateway.get(f"/v1/entities/{VALID[0][:17]}0/penalties", token)
    assert resp.status == 400
    auditor = await gateway.token("auditor")
    index = int(resp.headers["Audit-Entry"])
    got = await gateway.client.get("/audit/entries", params={"start": str(index), "end": str(index + 1)},
                                   headers={"Authorization": f"Bearer {auditor}"})
    entry = json.loads(base64.b64decode((await got.json())["entries"][0]["leaf"]))
    assert (entry["decision"], entry["status"], entry["error"]) == ("deny", 400, "invalid_uscc")
    assert (entry["uscc"], entry["fields"], entry["records"]) == ([], [], [])
    # The code is checked before the token, so the refusal names no operator.
    assert entry["client_id"] is None


async def test_valid_codes_pass_to_the_store(gateway: Any, sample_code: str) -> None:
    """Well-formed codes are not refused as malformed: unknown ones are 404, known ones 200."""
    token = await gateway.token("op")
    for code in VALID:
        resp = await gateway.get(f"/v1/entities/{code}/penalties", token)
        assert resp.status == 404, (code, await resp.text())
        assert (await resp.json())["error"] == "not_found"
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", token)
    assert resp.status == 200
