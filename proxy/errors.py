"""What can go wrong, in the domain's words: one module, importing nothing of platproxy.

Services, stores and the registry client raise these; they say *what* failed (a manifest is
unknown, the store is unavailable, the upstream refused) and carry the sentence and detail a
person needs.  *How* a client is told (HTTP status, OCI error code, headers) is decided in one
place at the HTTP edge (``proxy.http.errors``), and a command line prints ``message``.

May import: nothing of platproxy.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class PlatproxyError(Exception):
    """A failure a client or a user is told about: a sentence and an optional detail object."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


# -- bad input -----------------------------------------------------------------------------------


class InvalidName(PlatproxyError):
    """A repository name (or a request path) outside the distribution-spec grammar."""


class InvalidTag(PlatproxyError):
    """A tag outside the grammar (at most 128 word characters)."""


class InvalidDigest(PlatproxyError):
    """A malformed digest, or one in an algorithm platproxy does not verify."""


class InvalidPagination(PlatproxyError):
    """``n`` that is not a non-negative integer."""


class RangeNotSatisfiable(PlatproxyError):
    """A ``Range`` that starts past the end of a blob of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__("requested range not satisfiable", {"size": size})
        self.size = size


class Unsupported(PlatproxyError):
    """A push, a delete or any other write: platproxy is a read-only mirror."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__("platproxy is a read-only mirror", {"method": method, "path": path[:300]})


class Unauthorized(PlatproxyError):
    """A client that sent no credentials, or ones that were refused: ``challenge`` is the
    ``WWW-Authenticate`` value that tells it where and how to authenticate."""

    def __init__(self, challenge: str, message: str = "authentication required", detail: Any = None) -> None:
        super().__init__(message, detail)
        self.challenge = challenge


class CannotAuthorize(PlatproxyError):
    """Private content is cached, but whether this client may have it cannot be asked of the
    upstream now (unreachable) and no answer for it is remembered: never served unchecked."""


class Denied(PlatproxyError):
    """A ``[[policy]]`` rule forbids this repository or tag: never fetched, never served."""


# -- not found -----------------------------------------------------------------------------------


class NameUnknown(PlatproxyError):
    """No such repository, endpoint or configured registry."""


class ManifestUnknown(PlatproxyError):
    """No manifest to answer with: unknown, gone, nothing runs here, or not one the client reads."""


# -- upstream content that cannot be trusted ------------------------------------------------------


class InvalidHeader(PlatproxyError):
    """A request header platproxy reads has a value it cannot use (a platform that does not exist)."""


class NothingRuns(ManifestUnknown):
    """No entry of an index runs on the target platform: a 404, and a ``missing`` in the fleet view."""

    def __init__(self, message: str, detail: Any, index_digest: str) -> None:
        super().__init__(message, detail)
        self.index_digest = index_digest


class InvalidRequest(PlatproxyError):
    """A request body platproxy reads (a node registration) that it cannot use."""


class BlobUnknown(PlatproxyError):
    """No such blob here (a node check canary's)."""


class ManifestInvalid(PlatproxyError):
    """The upstream sent a manifest that is not one, or does not match its digest."""


class BlobInvalid(PlatproxyError):
    """A blob could not be fetched intact (short, or not matching its digest)."""


class DigestMismatch(ValueError):
    """Bytes that do not hash to the digest they were fetched as."""


# -- the upstream ---------------------------------------------------------------------------------


class UpstreamError(Exception):
    """An upstream registry did not give what was asked: its status (``None``: unreachable)."""

    def __init__(self, upstream: str, status: int | None, message: str, retry_after: str | None = None) -> None:
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def unreachable(self) -> bool:
        """No answer, or an answer that says the upstream cannot serve now (5xx, 429)."""
        return self.status is None or self.status >= 500 or self.status == 429


class Subject(Enum):
    """What was asked of the upstream, so that "not found" can say which kind of thing."""

    MANIFEST = "manifest"
    BLOB = "blob"
    REPOSITORY = "repository"


class UpstreamFailed(PlatproxyError):
    """Content that is not cached, and the upstream failed to give it (``error`` says how)."""

    def __init__(self, error: UpstreamError, subject: Subject, what: str) -> None:
        super().__init__(f"{what}: {error.message}", {"upstream": error.upstream, "error": error.message})
        self.error = error
        self.subject = subject
        self.what = what


# -- the store ------------------------------------------------------------------------------------


class StoreUnavailable(OSError):
    """A remote store (the bucket) could not be reached or refused a request; not: content missing."""


class StorageFailed(PlatproxyError):
    """The store could not keep or give ``what``: full or read-only (lasting) or unreachable (transient)."""

    def __init__(self, what: str, cause: BaseException) -> None:
        reason = getattr(cause, "strerror", None) or str(cause)
        self.transient = isinstance(cause, StoreUnavailable)
        verb = "the store cannot serve" if self.transient else "the cache cannot store"
        super().__init__(f"{verb} {what}: {reason}", {"error": reason})
        self.what = what
        self.reason = reason
