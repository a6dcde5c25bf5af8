"""Cold fills run by worker threads (``proxy.wire``): what a client of a fill can rely on.

The upstream is the fake (tests/fakeupstream.py) for what Distribution will not do on purpose: pace
a body slowly enough to leave in the middle of it, send chunked bodies, and count the blob
responses it is sending at once.  The clients are curl and a raw socket; platproxy is the real
process.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_faults import files_soon
from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy, config_args

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
Start = Callable[..., Platproxy]


def sha256_of(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["sh", "-c", f"curl -sf {url} | sha256sum"], stdout=subprocess.PIPE, text=True)


def digest_of(proc: subprocess.Popen[str]) -> str:
    return "sha256:" + proc.communicate(timeout=60)[0].split()[0]


def test_a_client_leaving_mid_fill_does_not_stop_it_for_the_others(platproxy: Start) -> None:
    fake = FakeUpstream(chunk_delay=0.02).start()
    try:
        data = os.urandom(48 * 65536)  # about 1 s at the fake's pace
        digest = fake.add_blob(data)
        proxy = platproxy(fake.url, "linux/amd64")
        leaver = socket.create_connection(("127.0.0.1", proxy.port))
        leaver.sendall(f"GET /v2/library/x/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while len(got) < 200_000:
            got += leaver.recv(65536)
        stayer = sha256_of(f"http://{proxy.address}/v2/library/x/blobs/{digest}")
        leaver.close()  # the first client, whose request started the fill, goes away
        assert digest_of(stayer) == digest
        assert fake.count("GET", digest) == 1
        stored = files_soon(proxy.cache_dir, "blobs", 1)
        assert [p.name for p in stored] == [digest[7:]]
        assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == digest[7:]
    finally:
        fake.stop()


def test_a_client_leaving_before_the_upstream_answers_is_no_error(platproxy: Start) -> None:
    """The client gives up while the upstream has not sent its headers yet: the fill goes on, the
    next client gets the blob, and the log says the client left (no traceback, no 500)."""
    fake = FakeUpstream(headers_delay=1.0).start()
    try:
        digest = fake.add_blob(os.urandom(65536))
        proxy = platproxy(fake.url, "linux/amd64")
        url = f"http://{proxy.address}/v2/library/x/blobs/{digest}"
        gave_up = subprocess.run(["curl", "-sf", "-m", "0.3", "-o", "/dev/null", url], timeout=10)
        assert gave_up.returncode == 28  # curl's "timed out"
        assert digest_of(sha256_of(url)) == digest
        assert fake.count("GET", digest) == 1
        assert proxy.wait_for_log("client left") == 1
        assert "unexpected error" not in proxy.log() and '"status": 500' not in proxy.log()
    finally:
        fake.stop()


def test_a_hundred_cold_fills_stay_within_max_upstream_fetches(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream(chunk_delay=0.01).start()
    try:
        digests = [fake.add_blob(os.urandom(4 * 65536)) for _ in range(100)]
        config = config_args(tmp_path, "[limits]\nmax_upstream_fetches = 8\n")
        proxy = platproxy(fake.url, "linux/amd64", config)
        procs = [sha256_of(f"http://{proxy.address}/v2/library/x/blobs/{d}") for d in digests]
        assert [digest_of(p) for p in procs] == digests
        assert 2 <= fake.max_active <= 8
        assert sum(fake.count("GET", d) for d in digests) == 100
        assert len(files_soon(proxy.cache_dir, "blobs", 100)) == 100
    finally:
        fake.stop()


def test_a_chunked_body_is_filled_verified_and_kept(platproxy: Start) -> None:
    """No Content-Length (as some CDNs send): the client's answer is chunked too, and complete
    only once the digest matched; a wrong one is cut."""
    fake = FakeUpstream(chunked=True).start()
    try:
        good = fake.add_blob(os.urandom(3 * 2**20 + 7))
        bad = fake.add_blob(os.urandom(2**20))
        fake.corrupt.add(bad)
        proxy = platproxy(fake.url, "linux/amd64")
        assert digest_of(sha256_of(f"http://{proxy.address}/v2/library/x/blobs/{good}")) == good
        cut = subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://{proxy.address}/v2/library/x/blobs/{bad}"],
                             timeout=60)  # fmt: skip
        assert cut.returncode != 0
        assert [p.name for p in files_soon(proxy.cache_dir, "blobs", 1)] == [good[7:]]
    finally:
        fake.stop()
