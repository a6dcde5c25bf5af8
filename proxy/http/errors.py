"""The one place where a domain error becomes an HTTP status, an OCI error code and headers.

Every failure a client sees is ``{"errors": [{"code", "message", "detail"}]}`` (the
distribution spec's error body).  The table below is the whole mapping; the domain modules
never name a status or a code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import (
    BlobInvalid,
    BlobUnknown,
    CannotAuthorize,
    Denied,
    InvalidDigest,
    InvalidHeader,
    InvalidName,
    InvalidPagination,
    InvalidRequest,
    InvalidTag,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PlatproxyError,
    RangeNotSatisfiable,
    StorageFailed,
    Subject,
    Unauthorized,
    Unsupported,
    UpstreamError,
    UpstreamFailed,
)


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    code: str
    message: str
    detail: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.detail)


def error_body(code: str, message: str, detail: Any = None) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()


_PLAIN: dict[type[PlatproxyError], tuple[int, str]] = {
    InvalidName: (400, "NAME_INVALID"),
    InvalidTag: (400, "TAG_INVALID"),
    InvalidDigest: (400, "DIGEST_INVALID"),
    InvalidPagination: (400, "PAGINATION_NUMBER_INVALID"),
    InvalidHeader: (400, "UNSUPPORTED"),
    InvalidRequest: (400, "UNSUPPORTED"),
    Unsupported: (405, "UNSUPPORTED"),
    Denied: (403, "DENIED"),
    NameUnknown: (404, "NAME_UNKNOWN"),
    ManifestUnknown: (404, "MANIFEST_UNKNOWN"),
    BlobUnknown: (404, "BLOB_UNKNOWN"),
    ManifestInvalid: (502, "MANIFEST_INVALID"),
    BlobInvalid: (502, "BLOB_UNKNOWN"),
    CannotAuthorize: (503, "UNAVAILABLE"),
}

_UNKNOWN_CODE = {Subject.MANIFEST: "MANIFEST_UNKNOWN", Subject.BLOB: "BLOB_UNKNOWN", Subject.REPOSITORY: "NAME_UNKNOWN"}


def answer_for(exc: PlatproxyError) -> ErrorAnswer:
    """Status, code, message, detail and headers for a domain error."""
    if isinstance(exc, UpstreamFailed):
        return _upstream(exc.error, exc.subject, exc.what)
    if isinstance(exc, StorageFailed):
        return ErrorAnswer(503 if exc.transient else 507, "UNAVAILABLE", exc.message, exc.detail)
    if isinstance(exc, RangeNotSatisfiable):
        return ErrorAnswer(416, "SIZE_INVALID", exc.message, exc.detail, {"Content-Range": f"bytes */{exc.size}"})
    if isinstance(exc, Unauthorized):
        return ErrorAnswer(401, "UNAUTHORIZED", exc.message, exc.detail, {"WWW-Authenticate": exc.challenge})
    for kind in type(exc).__mro__:
        if kind in _PLAIN:
            status, code = _PLAIN[kind]
            return ErrorAnswer(status, code, exc.message, exc.detail)
    return ErrorAnswer(500, "UNKNOWN", exc.message, exc.detail)


def _upstream(error: UpstreamError, subject: Subject, what: str) -> ErrorAnswer:
    """What a client sees when the upstream failed for content that is not cached."""
    detail = {"upstream": error.upstream, "error": error.message}
    if error.status == 404:
        return ErrorAnswer(404, _UNKNOWN_CODE[subject], f"{what} not found upstream", detail)
    if error.status == 429:
        headers = {"Retry-After": error.retry_after} if error.retry_after else {}
        return ErrorAnswer(429, "TOOMANYREQUESTS", f"upstream {error.upstream} is rate-limiting", detail, headers)
    if error.status in (401, 403):
        return ErrorAnswer(403, "DENIED", f"upstream {error.upstream} refused access to {what}", detail)
    if error.status == 413:
        return ErrorAnswer(413, "SIZE_INVALID", f"{what} is larger than the configured limit", detail)
    return ErrorAnswer(
        503, "UNAVAILABLE", f"upstream {error.upstream} is unreachable and this content is not cached", detail
    )
