"""The aiohttp adapter over authlib's `AuthorizationServer` (authlib ships none for aiohttp).

authlib's server is synchronous and calls its hooks (`query_client`, `validate_jti`,
`revoke_token`, ...) in the middle of its flow, while our store is async. So a handler
reads the whole form on the event loop, then runs authlib's flow on a worker thread;
a hook that needs the database hands a coroutine back to the event loop with `call()`
and waits for it. This keeps scrypt and signing off the event loop too. A semaphore
bounds how many flows run at once, so a flood of token requests cannot take every
worker thread or unbounded scrypt memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from aiohttp import web
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from multidict import CIMultiDict, MultiDictProxy
from sqlalchemy.exc import SQLAlchemyError

from credcore.clock import Clock
from credcore.errors import ServiceUnavailable

from .models import OAuthClient
from .verifier import AccessClaims

T = TypeVar("T")

# The event loop of the request being served, carried into the worker thread by
# asyncio.to_thread (which copies the context), so hooks know where to run coroutines.
_REQUEST_LOOP: contextvars.ContextVar[asyncio.AbstractEventLoop] = contextvars.ContextVar(
    "credgate_oauth_request_loop"
)
_HOOK_TIMEOUT = 30.0  # seconds a hook waits for the database before the request fails
_FORM = "application/x-www-form-urlencoded"


class OAuthBackend(Protocol):
    """What authlib's hooks need from the service; every method runs on the event loop."""

    async def load_client(self, client_id: str) -> OAuthClient | None: ...

    async def use_assertion_jti(self, client_id: str, jti: str, exp: int) -> bool: ...

    async def verify_token(self, token: str) -> AccessClaims | None: ...

    async def revoke(self, claims: AccessClaims) -> None: ...


class AiohttpOAuth2Request(OAuth2Request):
    """An OAuth2Request built from an aiohttp request whose form has already been read."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], form: dict[str, str]):
        super().__init__(method, uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}  # parameters in the query string are never read (RFC 6749 §2.3.1)


class CredgateAuthorizationServer(AuthorizationServer):
    def __init__(
        self,
        backend: OAuthBackend,
        *,
        issuer: str,
        clock: Clock,
        scopes_supported: list[str] | None,
    ) -> None:
        super().__init__(scopes_supported=scopes_supported)
        self.backend = backend
        self.issuer = issuer
        self.base_url = issuer.rstrip("/")
        self.token_endpoint = self.base_url + "/oauth/token"
        self.clock = clock

    # --- the bridge back to the event loop ------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the request's event loop and wait for it (worker threads only)."""
        loop = _REQUEST_LOOP.get(None)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is not None:
            coro.close()
            raise RuntimeError("authlib hooks must run on a worker thread of an OAuth handler")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout=_HOOK_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise

    # --- authlib's integration points -----------------------------------------------------

    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.call(self.backend.load_client(client_id))

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Nothing to store: access tokens are self-contained JWTs."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system in credgate."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("pass an AiohttpOAuth2Request built by OAuthHandlers")

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body).encode("utf-8") if body != "" else b"",
            headers=CIMultiDict(headers),
        )

    def error_response(self, error: OAuth2Error) -> web.Response:
        return self.handle_response(*error(None))

    def authenticate_client(
        self, request: OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> OAuthClient:
        form = request.form
        used = [
            extract_basic_authorization(request.headers)[0] is not None,
            "client_secret" in form,
            "client_assertion" in form,
        ]
        if sum(used) > 1:  # RFC 6749 §2.3: MUST NOT use more than one method per request
            raise InvalidRequestError("The request uses more than one client authentication.")
        client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        claimed = form.get("client_id")
        if claimed is not None and claimed != client.get_client_id():
            raise InvalidClientError(description="client_id does not match the credentials.")
        return client


class OAuthHandlers:
    """The aiohttp handlers of the three POST endpoints that authlib answers."""

    def __init__(self, server: CredgateAuthorizationServer, *, max_concurrency: int = 8) -> None:
        self.server = server
        self._max_concurrency = max_concurrency
        self._slots: asyncio.Semaphore | None = None

    async def token(self, request: web.Request) -> web.Response:
        return await self._run(request, self._token_flow)

    def _token_flow(self, request: AiohttpOAuth2Request) -> web.Response:
        # authlib answers a missing grant_type with unsupported_grant_type; RFC 6749 §5.2
        # calls a missing required parameter invalid_request.
        if not request.form.get("grant_type"):
            return self.server.error_response(InvalidRequestError("Missing grant_type."))
        response: web.Response = self.server.create_token_response(request)
        return response

    async def introspect(self, request: web.Request) -> web.Response:
        return await self._run(
            request, lambda r: self.server.create_endpoint_response("introspection", r)
        )

    async def revoke(self, request: web.Request) -> web.Response:
        return await self._run(
            request, lambda r: self.server.create_endpoint_response("revocation", r)
        )

    async def _run(
        self, request: web.Request, flow: Callable[[AiohttpOAuth2Request], web.Response]
    ) -> web.Response:
        oauth_request = await self._read(request)
        if isinstance(oauth_request, web.Response):
            return oauth_request
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_concurrency)
        _REQUEST_LOOP.set(asyncio.get_running_loop())
        try:
            async with self._slots:
                return await asyncio.to_thread(flow, oauth_request)
        except (SQLAlchemyError, TimeoutError) as exc:  # the one place store failures become ours
            raise ServiceUnavailable("The authorization server's store is unavailable.") from exc

    async def _read(self, request: web.Request) -> AiohttpOAuth2Request | web.Response:
        if request.content_type != _FORM:
            return self.server.error_response(
                InvalidRequestError(f"The request body must be {_FORM}.")
            )
        try:
            form: MultiDictProxy[Any] = await request.post()
        except (UnicodeDecodeError, ValueError):
            return self.server.error_response(InvalidRequestError("The form is not valid UTF-8."))
        values: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in form.items():
            values[name].append(value if isinstance(value, str) else "")
        repeated = sorted(name for name, items in values.items() if len(items) > 1)
        if repeated:  # RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once
            named = ", ".join(repeated)
            # error_description may only hold printable ASCII without '"' and '\\'
            if not all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in named):
                named = "a parameter"
            return self.server.error_response(InvalidRequestError(f"Repeated: {named}."))
        try:
            return AiohttpOAuth2Request(
                request.method,
                self.server.base_url + request.rel_url.path_qs,
                request.headers,
                {name: items[0] for name, items in values.items()},
            )
        except InsecureTransportError as error:
            return self.server.error_response(error)
