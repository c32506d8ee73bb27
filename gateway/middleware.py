"""The error boundary and the request limits.

`error_middleware` is the one place that turns every error into the contract's body
`{"error", "error_description"}`. For /v1 requests, and for requests that match no route, it
answers through `release`, so a refusal is audited exactly like a success and carries its
`Audit-Entry`. The process never dies on a request: an unexpected exception is logged and
answered 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from itertools import chain

from aiohttp import web
from aiohttp.typedefs import Middleware

from credcore.errors import BadRequest, CredgateError, MethodNotAllowed, NotFound, RequestTooLarge
from gateway.config import ServerSettings
from gateway.release import AccessRecord, error_response, release_error
from gateway.services import ACCESS, GATEWAY, SPAN
from gateway.tracing import trace_id_hex

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_v1(request: web.Request) -> bool:
    """Routed to the /v1 handler: by the router's match, not by the path as written, which for a
    request line in absolute form (`GET http://host/v1/...`) is the whole URL."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.startswith("/v1")


def recordable(text: str, limit: int) -> str:
    """`text` as the audit entry can hold it: bytes that were not UTF-8 (aiohttp decodes them to
    lone surrogates, which no JSON encoder writes) spelled out as escapes, cut to `limit`."""
    if text.isascii():  # nearly every request: nothing to escape
        return text[:limit]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def is_audited(request: web.Request, v1: bool) -> bool:
    """/v1 requests, and requests that match no route at all: a probe such as `/%2e%2e/v1/...`
    or `//v1/...` aimed at the data is refused 404, and the refusal is on the record too."""
    return v1 or request.match_info.http_exception is not None


def check_limits(request: web.Request, limits: ServerSettings) -> None:
    """413 / 414 / 431 before anything else looks at the request."""
    if len(request.raw_path) > limits.max_url_bytes:
        raise RequestTooLarge(f"The URL is longer than {limits.max_url_bytes} bytes.", status=414)
    raw_headers = request.raw_headers
    header_bytes = sum(map(len, chain.from_iterable(raw_headers))) + 4 * len(raw_headers)  # ": " and CRLF
    if header_bytes > limits.max_header_bytes:
        raise RequestTooLarge(f"The request headers exceed {limits.max_header_bytes} bytes.", status=431)
    length = request.content_length or 0
    if request.method in ("GET", "HEAD", "DELETE") and (request.body_exists or length > 0):
        raise RequestTooLarge(f"A {request.method} request must not carry a body.", status=413)
    if length > limits.max_body_bytes:
        raise RequestTooLarge(f"The request body is larger than {limits.max_body_bytes} bytes.", status=413)
    if "\x00" in request.raw_path or "%00" in request.raw_path:
        raise BadRequest("The URL contains a NUL byte.")


def _from_http(exc: web.HTTPException) -> CredgateError:
    if exc.status == 404:
        return NotFound("No such resource.")
    if exc.status == 405:
        return MethodNotAllowed("This method is not allowed here.", allow=exc.headers.get("Allow", ""))
    if exc.status == 413:
        return RequestTooLarge("The request body is too large.")
    return CredgateError(exc.reason or "The request failed.", status=exc.status)


def error_middleware() -> Middleware:
    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        gw = request.app[GATEWAY]
        v1 = is_v1(request)
        if not is_audited(request, v1):
            try:
                check_limits(request, gw.settings.server)
                return await handler(request)
            except CredgateError as exc:
                return error_response(exc)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return error_response(_from_http(exc))
            except Exception:  # the process never dies on a request; the trace goes to the log
                log.exception("unhandled error on %s %s", request.method, request.path)
                return error_response(CredgateError("The gateway failed to handle the request."))

        raw_path, _, raw_query = request.raw_path.partition("?")
        record = AccessRecord(  # the path and query exactly as sent (not decoded), for forensics
            method=recordable(request.method, 16),
            path=recordable(raw_path, 512),
            query=recordable(raw_query, 512),
            purpose=recordable((request.headers.get("X-Purpose") or "").strip(), 64) or None,
        )
        request[ACCESS] = record
        name = f"{request.method} /v1" if v1 else f"{request.method} (no route)"
        with gw.tracing.request_span(name, request.headers) as span:
            record.trace_id = trace_id_hex(span)
            request[SPAN] = span
            try:
                check_limits(request, gw.settings.server)
                response = await handler(request)
                span.set_attribute("http.status_code", response.status)
                gw.observe(record, response.status)
                return response
            except CredgateError as exc:
                error = exc
            except web.HTTPException as exc:
                error = _from_http(exc)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.path)
                error = CredgateError("The gateway failed to handle the request.")
            span.set_attribute("http.status_code", error.status)
            span.set_attribute("credgate.error", error.code)
            response = await release_error(gw.audit, gw.clock, record, error)
            gw.observe(record, response.status)
            return response

    return impl
