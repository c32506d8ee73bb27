"""Unified Social Credit Codes (GB 32100-2015) and resident ID numbers (GB 11643).

Pure functions. A USCC's 18th character is a mod-31 check over the first 17; positions 9-17
are a GB 11714 organization code with its own mod-11 check. Resident ID numbers are personal
data: `find_resident_ids` finds them in free text so the gateway can mask them and the
consistency checker can flag them. An all-digit USCC passes the ID check character one time in
eleven, so an ID number also needs a real province code and a real birth date.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from credcore.errors import InvalidUSCC

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1 3 9 27 19 26 16 17 20 29 25 ...
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

USCC_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a code."""
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    """The GB 11714 check character for an 8-character organization code body."""
    total = sum(_ORG_ALPHABET.index(c) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def uscc_problem(code: str) -> str | None:
    """Why `code` is not a valid USCC, or None when it is."""
    if not isinstance(code, str) or len(code) != 18:
        return "a Unified Social Credit Code has exactly 18 characters"
    if not USCC_RE.match(code):
        return "a Unified Social Credit Code uses only 0-9 and A-Y without I, O, S, V, Z"
    if uscc_check_char(code[:17]) != code[17]:
        return "the check character of the Unified Social Credit Code is wrong"
    return None


def is_valid_uscc(code: str) -> bool:
    return uscc_problem(code) is None


def validate_uscc(code: str) -> str:
    """Return `code` if it is a valid USCC, else raise InvalidUSCC with the reason."""
    problem = uscc_problem(code)
    if problem is not None:
        raise InvalidUSCC(problem[0].upper() + problem[1:] + ".")
    return code


def has_valid_org_code(code: str) -> bool:
    """True when positions 9-17 carry a correct GB 11714 check (most, not all, real codes do)."""
    body = code[8:16]
    return all(c in _ORG_ALPHABET for c in body) and org_code_check_char(body) == code[16]


def region_of(code: str) -> str:
    """The GB/T 2260 division code (positions 3-8) of the registering authority."""
    return code[2:8]


# --- GB 11643 resident identity numbers -------------------------------------------------

PROVINCE_CODES = frozenset(
    [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46]
    + [50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83]
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# 17 digits then a digit or X, not embedded in a longer run of code characters. `\d` is any
# Unicode decimal digit: an ID number written in full-width digits is still an ID number.
_SEVENTEEN_DIGITS = re.compile(r"\d{17}")  # any Unicode digits, as _ID_CANDIDATE matches
_ID_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx\uff38\uff58])(?![0-9A-Za-z])")


def _ascii_form(candidate: str) -> str:
    """Full-width or other Unicode digits (and a full-width X) as their ASCII equivalents."""
    if candidate.isascii():
        return candidate
    return "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else unicodedata.normalize("NFKC", c) for c in candidate
    )


def resident_id_check_char(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def is_resident_id(value: str) -> bool:
    """True for an 18-character GB 11643 number with a real province, birth date and check."""
    if len(value) != 18 or not value[:17].isdigit() or not value[:17].isascii():
        return False
    if int(value[:2]) not in PROVINCE_CODES:
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if born.year < 1900 or born > dt.date(2100, 1, 1):
        return False
    return resident_id_check_char(value[:17]) == value[17].upper()


def find_resident_ids(text: str) -> list[str]:
    """Every resident ID number that stands as its own token in `text`."""
    return [m for m in _ID_CANDIDATE.findall(text) if is_resident_id(_ascii_form(m))]


def mask_resident_ids(text: str) -> str:
    """Replace each resident ID number in `text` with asterisks of the same length."""
    if len(text) < 18 or not _SEVENTEEN_DIGITS.search(text):
        return text  # the common case, answered by one C-level scan
    return _ID_CANDIDATE.sub(lambda m: "*" * 18 if is_resident_id(_ascii_form(m.group(1))) else m.group(1), text)
