"""OCI error bodies: every failure a client sees is ``{"errors": [{code, message, detail}]}``."""

from __future__ import annotations

import json
from typing import Any

from proxy.registry.client import UpstreamError


class RegistryError(Exception):
    """An error to answer with an OCI error body; raised anywhere, rendered by the handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.detail)


def error_body(code: str, message: str, detail: Any = None) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()


def unsupported(method: str, path: str) -> RegistryError:
    return RegistryError(405, "UNSUPPORTED", "platproxy is a read-only mirror", {"method": method, "path": path[:300]})


def upstream_unavailable(upstream: str, why: str) -> RegistryError:
    return RegistryError(
        503,
        "UNAVAILABLE",
        f"upstream {upstream} is unreachable and this content is not cached",
        {"upstream": upstream, "error": why},
    )


def from_upstream(exc: UpstreamError, unknown_code: str, what: str) -> RegistryError:
    """What a client sees when the upstream failed for content that is not cached."""
    detail = {"upstream": exc.upstream, "error": exc.message}
    if exc.status == 404:
        return RegistryError(404, unknown_code, f"{what} not found upstream", detail)
    if exc.status == 429:
        headers = {"Retry-After": exc.retry_after} if exc.retry_after else {}
        return RegistryError(429, "TOOMANYREQUESTS", f"upstream {exc.upstream} is rate-limiting", detail, headers)
    if exc.status in (401, 403):
        return RegistryError(403, "DENIED", f"upstream {exc.upstream} refused access to {what}", detail)
    if exc.status == 413:
        return RegistryError(413, "SIZE_INVALID", f"{what} is larger than the configured limit", detail)
    return upstream_unavailable(exc.upstream, exc.message)


def storage_failed(what: str, exc: BaseException) -> RegistryError:
    """The cache could not store new content (disk full, read-only): clear, and nothing half-kept.

    A shared store that cannot be reached is a 503 (try again), not a 507 (this cache is full).
    """
    from proxy.storage.files import StoreUnavailable

    reason = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, StoreUnavailable):
        return RegistryError(503, "UNAVAILABLE", f"the store cannot serve {what}: {reason}", {"error": reason})
    return RegistryError(507, "UNAVAILABLE", f"the cache cannot store {what}: {reason}", {"error": reason})
