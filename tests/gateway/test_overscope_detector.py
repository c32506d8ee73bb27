"""The over-scope detector on its own: sliding windows per operator on an injected time."""

from __future__ import annotations

import dataclasses

from credcore.codes import org_code_check_char, uscc_check_char
from gateway.overscope import Detector, Thresholds


def code(prefix: str, body: int) -> str:
    """A valid credit code with the given first 8 characters and organization code body."""
    digits = f"{body:08d}"
    first17 = prefix + digits + org_code_check_char(digits)
    return first17 + uscc_check_char(first17)


SCATTERED = [code("91310115", n * 7919) for n in range(1, 200)]


def detector(**limits: int) -> Detector:
    base = Thresholds(window=60.0, max_scope_denials=5, max_not_found=5, max_distinct_codes=50, max_sequential=5,
                      sequential_gap=2)
    return Detector(dataclasses.replace(base, **limits))


def test_scope_violations_trip_past_the_threshold() -> None:
    """The sixth scope denial within the window trips with a reason giving count, window and threshold."""
    d = detector()
    trips = [d.observe("op", status=403, scope_denied=True, codes=[], now=float(n)) for n in range(6)]
    assert trips[:5] == [None] * 5
    trip = trips[5]
    assert trip is not None and trip.kind == "scope_violations"
    assert "6 requests outside its licence" in trip.reason and "60 s" in trip.reason and "threshold 5" in trip.reason


def test_windows_slide() -> None:
    """Denials older than the window no longer count."""
    d = detector()
    for n in range(5):
        assert d.observe("op", status=403, scope_denied=True, codes=[], now=float(n)) is None
    for n in range(5):
        assert d.observe("op", status=403, scope_denied=True, codes=[], now=65.0 + n) is None
    assert d.observe("op", status=403, scope_denied=True, codes=[], now=69.5) is not None


def test_operators_are_counted_apart() -> None:
    """One operator's denials never count against another."""
    d = detector()
    for n in range(5):
        assert d.observe("a", status=403, scope_denied=True, codes=[], now=float(n)) is None
        assert d.observe("b", status=403, scope_denied=True, codes=[], now=float(n)) is None


def test_not_found_lookups_trip() -> None:
    """Many 404 answers to lookups of well-formed codes are enumeration."""
    d = detector()
    trips = [d.observe("op", status=404, scope_denied=False, codes=[c], now=1.0) for c in SCATTERED[:6]]
    assert trips[-1] is not None and trips[-1].kind == "enumeration_not_found"
    assert trips[-1].detail["recent_codes"][-1] == SCATTERED[5]


def test_distinct_codes_trip_but_repeats_do_not() -> None:
    """Many distinct codes trip; the same few codes asked again and again do not."""
    d = detector()
    for n in range(1000):
        assert d.observe("op", status=200, scope_denied=False, codes=[SCATTERED[n % 10]], now=n / 100) is None
    trips = [d.observe("op", status=200, scope_denied=False, codes=[c], now=20.0) for c in SCATTERED[:51]]
    assert trips[-1] is not None and trips[-1].kind == "enumeration_distinct_codes"
    assert trips[:-1] == [None] * 50


def test_sequential_codes_trip() -> None:
    """Codes whose organization codes follow each other (same division) are enumeration."""
    d = detector(max_distinct_codes=1000, max_not_found=1000)
    trips = [d.observe("op", status=200, scope_denied=False, codes=[code("91310115", 4200 + n)], now=1.0)
             for n in range(7)]
    assert trips[:6] == [None] * 6  # the first has no neighbour; five sequential hits are allowed
    assert trips[6] is not None and trips[6].kind == "enumeration_sequential"


def test_decimal_walk_across_a_carry_is_sequential() -> None:
    """...39 → ...40 is one step for an enumerator counting in decimal, though 27 apart in base 36."""
    d = detector(max_distinct_codes=1000, max_not_found=1000, max_sequential=1)
    assert d.observe("op", status=404, scope_denied=False, codes=[code("91440300", 31339)], now=1.0) is None
    assert d.observe("op", status=404, scope_denied=False, codes=[code("91440300", 31340)], now=1.0) is None
    assert d.observe("op", status=404, scope_denied=False, codes=[code("91440300", 31341)], now=1.0) is not None


def test_scattered_codes_are_not_sequential() -> None:
    """Codes far apart, or close but in another division, are not counted as sequential."""
    d = detector(max_distinct_codes=1000, max_not_found=1000)
    for c in SCATTERED[:100]:
        assert d.observe("op", status=200, scope_denied=False, codes=[c], now=1.0) is None
    for n in range(10):
        assert d.observe("op", status=200, scope_denied=False, codes=[code(f"913{n}0115", 777)], now=1.0) is None


def test_state_is_forgotten_when_idle() -> None:
    """An operator whose windows emptied holds no state."""
    d = detector()
    d.observe("op", status=200, scope_denied=False, codes=[SCATTERED[0]], now=0.0)
    d.observe("op", status=200, scope_denied=False, codes=[], now=100.0)
    assert "op" not in d._tracks
