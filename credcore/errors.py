"""One error hierarchy for credgate, with the HTTP status each error maps to.

    CredgateError (500 internal_error)
    ├── BadRequest (400 invalid_request)
    │   ├── InvalidUSCC (400 invalid_uscc)
    │   ├── InvalidParameter (400 invalid_request, names the parameter)
    │   └── MethodNotAllowed (405 invalid_request, `allow` lists the methods for the Allow header)
    ├── InvalidToken (401 invalid_token)
    ├── Forbidden (403 insufficient_scope)
    │   └── OperatorSuspended (403 operator_suspended)
    ├── NotFound (404 not_found)
    ├── RequestTooLarge (413 / 414 / 431 request_too_large)
    ├── QuotaExceeded (429 quota_exceeded, retry_after seconds)
    ├── UpstreamError (502 upstream_error)
    ├── UpstreamTimeout (504 upstream_timeout)
    ├── AuditUnavailable (503 audit_unavailable)
    ├── ServiceUnavailable (503 service_unavailable)
    ├── ConfigError (a setting is unknown or malformed; the CLI exits non-zero)
    └── VerificationError (a log, proof, note or record fails verification)

Every stage of the gateway raises one of these; a single middleware turns it into the
contract's body `{"error", "error_description"}`. Libraries' own errors are mapped to these at
the boundary where they occur (`raise ... from exc`).
"""

from __future__ import annotations


class CredgateError(Exception):
    """Base of every credgate error: a wire code, a status hint and one human sentence."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, description: str, *, status: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        if status is not None:
            self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


class BadRequest(CredgateError):
    status = 400
    code = "invalid_request"


class InvalidUSCC(BadRequest):
    code = "invalid_uscc"


class MethodNotAllowed(BadRequest):
    """The resource exists but not with this method; `allow` is what the Allow header says."""

    status = 405

    def __init__(self, description: str, allow: str = "GET") -> None:
        super().__init__(description)
        self.allow = allow


class InvalidParameter(BadRequest):
    """A query or body parameter is malformed; `parameter` names it."""

    def __init__(self, parameter: str, description: str) -> None:
        super().__init__(description)
        self.parameter = parameter


class InvalidToken(CredgateError):
    status = 401
    code = "invalid_token"


class Forbidden(CredgateError):
    status = 403
    code = "insufficient_scope"


class OperatorSuspended(Forbidden):
    code = "operator_suspended"


class NotFound(CredgateError):
    status = 404
    code = "not_found"


class RequestTooLarge(CredgateError):
    status = 413
    code = "request_too_large"


class QuotaExceeded(CredgateError):
    status = 429
    code = "quota_exceeded"

    def __init__(self, description: str, *, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = max(1, int(retry_after))


class UpstreamError(CredgateError):
    status = 502
    code = "upstream_error"


class UpstreamTimeout(CredgateError):
    status = 504
    code = "upstream_timeout"


class AuditUnavailable(CredgateError):
    status = 503
    code = "audit_unavailable"


class ServiceUnavailable(CredgateError):
    status = 503
    code = "service_unavailable"


class ConfigError(CredgateError):
    """A configuration key is unknown or its value is invalid; the message names the key."""

    code = "config_error"


class VerificationError(CredgateError):
    """Verification failed. `index` is the first bad log index when one applies."""

    code = "verification_failed"

    def __init__(self, description: str, *, index: int | None = None) -> None:
        super().__init__(description)
        self.index = index
