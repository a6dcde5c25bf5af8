"""Bad requests get 4xx OCI errors, never reach the upstream, and touch nothing outside the cache."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy

pytestmark = pytest.mark.e2e

BAD = [
    ("GET", "/v2/../../etc/passwd/manifests/latest", "NAME_INVALID"),
    ("GET", "/v2/library/..%2f..%2fetc/manifests/latest", "NAME_INVALID"),
    ("GET", "/v2/library/%2e%2e/manifests/1", "NAME_INVALID"),
    ("GET", "/v2/library/x/manifests/%00", "NAME_INVALID"),
    ("GET", "/v2/library/x/manifests/sha256:zzz", "DIGEST_INVALID"),
    ("GET", "/v2/library/x/manifests/md5:d41d8cd98f00b204e9800998ecf8427e", "DIGEST_INVALID"),
    ("GET", "/v2/library/x/blobs/sha256:../../../etc/passwd", "NAME_INVALID"),
    ("GET", "/v2/library/./x/manifests/1", "NAME_INVALID"),
    ("GET", "/v2/library/x/blobs/sha512:abcdef", "DIGEST_INVALID"),
    ("GET", "/v2/library/x/blobs/notadigest", "DIGEST_INVALID"),
    ("GET", "/v2/" + "a" * 300 + "/manifests/latest", "NAME_INVALID"),
    ("GET", "/v2/library/x/manifests/" + "t" * 200, "MANIFEST_UNKNOWN"),  # neither tag nor digest: 404 (conformance)
    ("GET", "/v2/library/x/manifests/-leading-dash", "MANIFEST_UNKNOWN"),
    ("GET", "/v2/Library/X/manifests/1", "NAME_INVALID"),
    ("GET", "/v2/library//x/manifests/1", "NAME_INVALID"),
    ("GET", "/v2/library/x/tags/list?n=abc", "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/library/x/manifests/1?ns=evil.example.com", "NAME_UNKNOWN"),
    ("GET", "/v2/library/x/somethingelse/1", "NAME_UNKNOWN"),
    ("GET", "/etc/passwd", "NAME_UNKNOWN"),
    ("PUT", "/v2/library/x/manifests/1", "UNSUPPORTED"),
    ("DELETE", "/v2/library/x/manifests/sha256:" + "a" * 64, "UNSUPPORTED"),
    ("DELETE", "/v2/library/x/blobs/sha256:" + "a" * 64, "UNSUPPORTED"),
    ("POST", "/v2/library/x/blobs/uploads/", "UNSUPPORTED"),
    ("PATCH", "/v2/library/x/blobs/uploads/some-uuid", "UNSUPPORTED"),
    ("PUT", "/v2/library/x/blobs/uploads/some-uuid?digest=sha256:" + "a" * 64, "UNSUPPORTED"),
]


def snapshot(root: Path, skip: Path) -> set[str]:
    out = set()
    for dirpath, _, files in os.walk(root):
        if Path(dirpath).is_relative_to(skip):
            continue
        out |= {os.path.join(dirpath, f) for f in files} | {dirpath}
    return out


@pytest.mark.parametrize(("method", "path", "code"), BAD, ids=[f"{m} {p[:60]}" for m, p, _ in BAD])
def test_bad_request(platproxy: Callable[..., Platproxy], tmp_path: Path, method: str, path: str, code: str) -> None:
    fake = FakeUpstream().start()
    try:
        sandbox = tmp_path / "sandbox"
        sandbox.mkdir()
        (sandbox / "secret").write_text("do not touch")
        proxy = platproxy(fake.url, "linux/amd64", cache=sandbox / "cache")
        before = snapshot(tmp_path, sandbox / "cache")
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        assert 400 <= resp.status < 500, (resp.status, body)
        error = json.loads(body)["errors"][0]
        assert error["code"] == code and error["message"]
        assert b"Traceback" not in body
        assert snapshot(tmp_path, sandbox / "cache") - before <= {str(proxy.log_path)}
        assert (sandbox / "secret").read_text() == "do not touch"
        assert [s.path for s in fake.seen] == []
        assert "Traceback" not in proxy.log()
    finally:
        fake.stop()
