"""The /v1 request pipeline. The handler reads like the path of a request:

route + code → token → suspension → licence → quota → store → field filter → audit → response

Each stage is one call that either returns what the next needs or raises a credgate error with
its status; the error middleware answers (and audits) a refusal, `release` answers a success.
"""

from __future__ import annotations

import hashlib
import re

from aiohttp import web

from credcore.errors import Forbidden, InvalidParameter, InvalidToken, MethodNotAllowed, UpstreamError
from gateway.filtering import Filtered, ReleaseMemo, filter_body
from gateway.licensing import Grant, LicenceDenied
from gateway.oauth import AccessClaims
from gateway.release import AccessRecord, json_bytes, release
from gateway.routes import Route, match_route
from gateway.services import ACCESS, GATEWAY, SPAN, Services
from gateway.upstream import parse_object

DATA_SCOPE = "data:read"
_CURSOR = re.compile(r"[A-Za-z0-9_=-]{1,200}")
_LIMIT = re.compile(r"[0-9]{1,4}")


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("A bearer access token is required (Authorization: Bearer <token>).")
    return token.strip()


def check_token(gw: Services, request: web.Request, record: AccessRecord) -> AccessClaims:
    claims = gw.verify_token(bearer_token(request), record)
    if DATA_SCOPE not in claims.scope:
        raise Forbidden(f"The access token lacks the '{DATA_SCOPE}' scope.")
    return claims


def authorize(gw: Services, route: Route, record: AccessRecord) -> Grant:
    if record.purpose is None:
        record.purpose = gw.licensing.default_purpose(record.client_id or "")
        record.purpose_declared = False
    try:
        region = route.uscc[2:8] if route.uscc else None
        grant = gw.licensing.authorize(record.client_id or "", route.dataset, record.purpose, region)
    except LicenceDenied as denied:
        record.reason = denied.description
        raise
    record.licence = grant.decision.licence_id
    record.rule = list(grant.decision.rule or ())
    record.reason = grant.decision.reason
    return grant


def paging(request: web.Request, route: Route, grant: Grant) -> dict[str, str]:
    """The only query parameters forwarded: a well-formed cursor and a capped limit (bulk only)."""
    if not route.bulk:
        return {}
    params: dict[str, str] = {}
    cursor = request.query.get("cursor", "")
    if cursor:
        if not _CURSOR.fullmatch(cursor):  # not `match` with `$`, which lets a trailing newline through
            raise InvalidParameter("cursor", "The 'cursor' parameter is malformed.")
        params["cursor"] = cursor
    cap = grant.licence.quotas.page_size_max
    raw = request.query.get("limit", "")
    if raw:
        if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= 1000:  # ASCII digits only: "²".isdigit()
            raise InvalidParameter("limit", "The 'limit' parameter must be an integer from 1 to 1000.")
        params["limit"] = str(min(int(raw), cap))
    else:
        params["limit"] = str(min(100, cap))
    return params


def filter_released(memo: ReleaseMemo, route: Route, grant: Grant, raw: bytes, record: AccessRecord) -> Filtered:
    """Licensed fields only, ID numbers masked; the same store bytes under the same terms are
    filtered once (ReleaseMemo)."""
    fields, regions = grant.fields(route.dataset), grant.region_prefixes
    key = (route.dataset, route.bulk, fields, regions, hashlib.sha256(raw).digest())
    hit = memo.get(key)
    if hit is None:
        try:
            released = filter_body(parse_object(raw), fields, bulk=route.bulk, region_prefixes=regions)
            hit = Filtered.of(json_bytes(released.body), released)
        except ValueError as exc:  # NaN, infinities, lone surrogates: nothing JSON can carry exactly
            raise UpstreamError("The public credit store answered with values JSON cannot carry exactly.") from exc
        memo.put(key, hit)
    record.fields, record.stripped, record.records = hit.fields, hit.stripped, hit.records
    return hit


async def v1_handler(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    record = request[ACCESS]
    stage = gw.tracing.stage
    with stage("route"):  # route and code first (CONTRACTS section 3), then the method
        route = match_route(request.raw_path.partition("?")[0])
        record.dataset, record.uscc = route.dataset, [route.uscc] if route.uscc else []
    if request.method != "GET":
        raise MethodNotAllowed("Only GET is allowed on /v1.")
    with stage("token"):
        check_token(gw, request, record)
    with stage("suspension"):
        gw.licensing.check_suspension(record.client_id or "")
    with stage("authorization"):
        grant = authorize(gw, route, record)
        params = paging(request, route, grant)
    with stage("quota"):
        await gw.licensing.consume(grant.licence)
    with stage("upstream"):
        headers = gw.tracing.traceparent(request[SPAN])  # W3C traceparent: the store joins this trace
        if route.dataset == "recognitions":
            raw = json_bytes(await gw.recognitions(route.uscc or ""))
        else:
            raw = await gw.upstream.get_bytes(route.path, params, headers)
    with stage("filter"):
        filtered = filter_released(gw.release_memo, route, grant, raw, record)
    with stage("audit"):
        return await release(gw.audit, gw.clock, record, status=200, body=filtered.data, body_sha256=filtered.sha256)
