"""The /v1 route table: strict matching on the raw path, before any decoding.

Only the exact shapes of CONTRACTS section 3 match. Anything that could be read two ways
(percent-encoding, dot segments, double slashes, NUL) is refused outright, so no request can
reach another route than the one it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from credcore.codes import validate_uscc
from credcore.errors import BadRequest, NotFound

_ENTITY = re.compile(r"^/v1/entities/([^/]+)(?:/(penalties|licences|recognitions))?$")
_BULK = {"/v1/lists/serious-untrustworthy": "serious_untrustworthy", "/v1/disclosures": "disclosures"}
_SUBPATH_DATASET = {None: "entities", "penalties": "penalties", "licences": "licences", "recognitions": "recognitions"}
_AMBIGUOUS = re.compile(r"%|//|/\.\.?(?:/|$)|\x00|\\")


@dataclass(frozen=True)
class Route:
    dataset: str
    uscc: str | None  # None for bulk data sets
    path: str  # the path forwarded to the store (never anything the client chose beyond this)

    @property
    def bulk(self) -> bool:
        return self.uscc is None


@lru_cache(maxsize=8192)
def match_route(raw_path: str) -> Route:
    """The route of a /v1 raw path (no query), or BadRequest/InvalidUSCC/NotFound. Pure, so
    remembered: operators read the same companies again and again (refusals are not kept)."""
    if not raw_path.startswith("/"):  # a request line in absolute form: GET http://host/v1/...
        raise BadRequest("Send the path alone (origin form, starting with /), not a full URL.")
    if _AMBIGUOUS.search(raw_path):
        raise BadRequest("The path contains encoded, dot or empty segments; write it plainly.")
    if raw_path in _BULK:
        return Route(_BULK[raw_path], None, raw_path)
    match = _ENTITY.match(raw_path)
    if match is None:
        raise NotFound("No such resource.")
    code, sub = match.group(1), match.group(2)
    validate_uscc(code)
    return Route(_SUBPATH_DATASET[sub], code, raw_path)
