"""The one mapping from domain errors to HTTP status, OCI code and headers, as a table."""

from __future__ import annotations

import json

import pytest

from proxy.errors import (
    BlobInvalid,
    InvalidDigest,
    InvalidName,
    InvalidPagination,
    InvalidTag,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PlatproxyError,
    RangeNotSatisfiable,
    StorageFailed,
    StoreUnavailable,
    Subject,
    Unauthorized,
    Unsupported,
    UpstreamError,
    UpstreamFailed,
)
from proxy.http.errors import answer_for


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidName("x"), 400, "NAME_INVALID"),
        (InvalidTag("x"), 400, "TAG_INVALID"),
        (InvalidDigest("x"), 400, "DIGEST_INVALID"),
        (InvalidPagination("x"), 400, "PAGINATION_NUMBER_INVALID"),
        (Unsupported("PUT", "/v2/x/blobs/uploads/"), 405, "UNSUPPORTED"),
        (NameUnknown("x"), 404, "NAME_UNKNOWN"),
        (ManifestUnknown("x"), 404, "MANIFEST_UNKNOWN"),
        (ManifestInvalid("x"), 502, "MANIFEST_INVALID"),
        (BlobInvalid("x"), 502, "BLOB_UNKNOWN"),
        (StorageFailed("blob b", OSError(28, "No space left on device")), 507, "UNAVAILABLE"),
        (StorageFailed("blob b", StoreUnavailable("bucket down")), 503, "UNAVAILABLE"),
        (UpstreamFailed(UpstreamError("u", 404, "gone"), Subject.MANIFEST, "r:t"), 404, "MANIFEST_UNKNOWN"),
        (UpstreamFailed(UpstreamError("u", 404, "gone"), Subject.BLOB, "blob b"), 404, "BLOB_UNKNOWN"),
        (UpstreamFailed(UpstreamError("u", 404, "gone"), Subject.REPOSITORY, "repository r"), 404, "NAME_UNKNOWN"),
        (UpstreamFailed(UpstreamError("u", 401, "no"), Subject.BLOB, "blob b"), 403, "DENIED"),
        (UpstreamFailed(UpstreamError("u", 403, "no"), Subject.BLOB, "blob b"), 403, "DENIED"),
        (UpstreamFailed(UpstreamError("u", 413, "big"), Subject.MANIFEST, "r:t"), 413, "SIZE_INVALID"),
        (UpstreamFailed(UpstreamError("u", None, "down"), Subject.MANIFEST, "r:t"), 503, "UNAVAILABLE"),
        (UpstreamFailed(UpstreamError("u", 500, "boom"), Subject.BLOB, "blob b"), 503, "UNAVAILABLE"),
        (PlatproxyError("something new"), 500, "UNKNOWN"),
    ],
)
def test_status_and_code(error: PlatproxyError, status: int, code: str) -> None:
    answer = answer_for(error)
    assert (answer.status, answer.code) == (status, code)
    body = json.loads(answer.body())
    assert body["errors"][0]["code"] == code and body["errors"][0]["message"]


def test_headers_that_go_with_the_error() -> None:
    assert answer_for(RangeNotSatisfiable(100)).headers == {"Content-Range": "bytes */100"}
    assert answer_for(Unauthorized('Basic realm="platproxy"')).headers == {
        "WWW-Authenticate": 'Basic realm="platproxy"'
    }
    limited = UpstreamFailed(UpstreamError("hub", 429, "too many", "30"), Subject.BLOB, "blob b")
    answer = answer_for(limited)
    assert (answer.status, answer.code, answer.headers) == (429, "TOOMANYREQUESTS", {"Retry-After": "30"})
    assert "rate-limiting" in answer.message


def test_upstream_messages_name_the_upstream_and_the_content() -> None:
    down = answer_for(UpstreamFailed(UpstreamError("hub", None, "refused"), Subject.BLOB, "blob b"))
    assert down.message == "upstream hub is unreachable and this content is not cached"
    assert down.detail == {"upstream": "hub", "error": "refused"}
    missing = answer_for(UpstreamFailed(UpstreamError("hub", 404, "x"), Subject.MANIFEST, "library/a:1"))
    assert missing.message == "library/a:1 not found upstream"


def test_storage_messages_say_which_kind_of_failure() -> None:
    full = answer_for(StorageFailed("blob b", OSError(28, "No space left on device")))
    assert full.message == "the cache cannot store blob b: No space left on device"
    down = answer_for(StorageFailed("blob b", StoreUnavailable("the store is unreachable")))
    assert down.message == "the store cannot serve blob b: the store is unreachable"
