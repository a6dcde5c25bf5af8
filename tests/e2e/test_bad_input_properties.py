"""Property-based bad input against a running platproxy: never a 5xx, never a traceback, an
OCI error body on every 4xx, and nothing outside the cache directory created or read.

Reads are caught with a real filesystem that records them: the cache and a sentinel file
beside it live on a tmpfs mounted with ``strictatime``, so any read of the sentinel (or any
other file outside the cache) would move its access time.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SEGMENTS = ["..", ".", "%2e%2e", "%2E%2E", "%2f", "%2F", "%00", "%5c", "secret", "library", "x", "a" * 300,
            "sha256:" + "a" * 64, "sha512:" + "b" * 128, "md5:" + "c" * 32, "sha256:..", "manifests", "blobs",
            "tags", "list", "referrers", "uploads", "", "A", "%", "~", "-", "_", "latest", "t" * 129]  # fmt: skip
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
safe_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platproxy, Path]]:
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a strictatime tmpfs needs root (CI runs as root)")
    disk = tmp_path_factory.mktemp("fuzz") / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,strictatime", "tmpfs", str(disk)], check=True)
    (disk / "secret").write_text("never read")
    fake = FakeUpstream().start()
    proxy = Platproxy(disk / "cache", fake.url, "linux/amd64", log_dir=disk.parent).start()
    try:
        yield proxy, disk
    finally:
        proxy.stop()
        fake.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert "Traceback" not in proxy.log()


def outside(disk: Path) -> dict[str, tuple[float, float]]:
    """Every file outside the cache directory with its (access, modify) times."""
    found = {}
    for root, _, names in os.walk(disk):
        if Path(root).is_relative_to(disk / "cache"):
            continue
        for name in names:
            st_ = os.stat(Path(root) / name)
            found[str(Path(root) / name)] = (st_.st_atime, st_.st_mtime)
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(METHODS),
    segments=st.lists(st.sampled_from(SEGMENTS) | safe_text, min_size=0, max_size=8),
    query=st.dictionaries(st.sampled_from(["ns", "n", "last", "artifactType", "digest"]), safe_text, max_size=3),
    accept=st.sampled_from(
        ["", "*/*", "application/json", "x" * 20000, ";;;,,,", "application/vnd.oci.image.index.v1+json;q=0"]
    ),
    range_=st.sampled_from(
        ["", "bytes=0-", "bytes=-1", "bytes=99999999999999999999-", "bytes=5-1", "x" * 20000, "bytes=0-0,1-1"]
    ),
    extra=st.dictionaries(st.sampled_from(["Authorization", "If-None-Match", "User-Agent", "X-Anything"]), safe_text),
)
def test_bad_input_never_breaks_anything(
    target: tuple[Platproxy, Path], method: str, segments: list[str], query: dict[str, str], accept: str,
    range_: str, extra: dict[str, str],
) -> None:  # fmt: skip
    proxy, disk = target
    path = "/v2/" + "/".join(segments)
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    assume(" " not in path and "#" not in path)
    before = outside(disk)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
    except http.client.InvalidURL:
        assume(False)
    headers = {**extra, **({"Accept": accept} if accept else {}), **({"Range": range_} if range_ else {})}
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status < 500, (response.status, body[:300])
    assert b"Traceback" not in body
    if 400 <= response.status < 500 and method != "HEAD":
        error = json.loads(body)["errors"][0]
        assert error["code"] and error["message"]
    assert outside(disk) == before  # nothing outside the cache created, changed or read
