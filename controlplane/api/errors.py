"""API errors and their wire form, the ``Status`` object.

Exception tree (HTTP code, ``reason``)::

    ApiError                      500 InternalError (never sent with a traceback)
    ├── BadRequest                400 BadRequest
    ├── Unauthorized              401 Unauthorized
    ├── Forbidden                 403 Forbidden
    ├── NotFound                  404 NotFound
    ├── MethodNotAllowed          405 MethodNotSupported
    ├── NotAcceptable             406 NotAcceptable
    ├── AlreadyExists             409 AlreadyExists
    ├── Conflict                  409 Conflict
    ├── Gone                      410 Expired
    ├── RequestEntityTooLarge     413 RequestEntityTooLarge
    ├── UnsupportedMediaType      415 UnsupportedMediaType
    ├── Invalid                   422 Invalid (with ``causes``, one per field)
    ├── TooManyRequests           429 TooManyRequests
    └── ServiceUnavailable        503 ServiceUnavailable

The server raises these and renders them with ``to_status()``; the client parses a ``Status``
body back into the same class with ``from_status()``, so both ends speak one vocabulary.
kubectl builds its 422 message from ``details.kind``, ``details.name`` and ``details.causes``
(not from ``message``), so ``Invalid`` always fills them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"  # FieldValueRequired, FieldValueNotSupported, FieldValueDuplicate …

    def to_dict(self) -> dict[str, str]:
        # StatusCause.Field is ``omitempty`` (e.g. the eviction's DisruptionBudget cause has none)
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class ApiError(Exception):
    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        name: str = "",
        group: str = "",
        causes: list[Cause] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = causes or []
        self.retry_after = retry_after

    def to_status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        # metav1.Status's field order (details before code): clients that compare the error body
        # as text, like the Python client's FailToCreateError messages, see Kubernetes' bytes.
        if details:
            status["details"] = details
        status["code"] = self.code
        return status


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(ApiError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class Gone(ApiError):
    code = 410
    reason = "Expired"


class RequestEntityTooLarge(ApiError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"


class ServiceUnavailable(ApiError):
    code = 503
    reason = "ServiceUnavailable"


_BY_REASON: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        AlreadyExists,
        Conflict,
        Gone,
        RequestEntityTooLarge,
        UnsupportedMediaType,
        Invalid,
        TooManyRequests,
        ServiceUnavailable,
    )
}
_BY_CODE: dict[int, type[ApiError]] = {}
for _cls in _BY_REASON.values():
    _BY_CODE.setdefault(_cls.code, _cls)


def not_found(resource_plural: str, name: str, group: str = "") -> NotFound:
    """``pods "web" not found`` — the exact wording kubectl prints."""
    return NotFound(f'{resource_plural} "{name}" not found', kind=resource_plural, name=name, group=group)


def already_exists(resource_plural: str, name: str, group: str = "") -> AlreadyExists:
    return AlreadyExists(f'{resource_plural} "{name}" already exists', kind=resource_plural, name=name, group=group)


def conflict(resource_plural: str, name: str, group: str = "") -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {resource_plural} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=resource_plural,
        name=name,
        group=group,
    )


def invalid(kind: str, name: str, causes: list[Cause]) -> Invalid:
    """``The Pod "bad" is invalid: spec.containers: Required value`` (kubectl's format)."""
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    return Invalid(f'{kind} "{name}" is invalid: {summary}', kind=kind, name=name, causes=causes)


def from_status(code: int, body: dict[str, Any] | None) -> ApiError:
    """Turn an error response back into the matching exception (used by the client)."""
    body = body or {}
    reason = str(body.get("reason", ""))
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or ApiError
    details = body.get("details") or {}
    causes = [
        Cause(field=str(c.get("field", "")), message=str(c.get("message", "")), reason=str(c.get("reason", "")))
        for c in details.get("causes", []) or []
    ]
    err = cls(
        str(body.get("message") or f"HTTP {code}"),
        kind=str(details.get("kind", "")),
        name=str(details.get("name", "")),
        group=str(details.get("group", "")),
        causes=causes,
        retry_after=details.get("retryAfterSeconds"),
    )
    return err
