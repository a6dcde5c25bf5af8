"""TLS encrypted on relay threads (``proxy.tlsrelay``), seen from a client: the client's own
address still places it, one keep-alive connection carries manifests and blobs (a filling one,
a stored one, a range) in order, and a client that leaves mid-blob, a connection that never
says hello or a server stopping mid-blob leave nothing behind: no descriptor, no thread, no
body that ends short and clean."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.conftest import Seeded
from tests.e2e.test_tls import IMAGE, start_tls, tls_config
from tests.registry import Platproxy
from tests.tlsfiles import TestCA

pytestmark = pytest.mark.e2e
ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
RULES = '[[clients]]\ncidr = "127.0.0.2/32"\nplatform = "linux/arm64/v8"\n[limits]\nheader_timeout = 1\n'


def connect(proxy: Platproxy, ctx: ssl.SSLContext, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=60, context=ctx, source_address=(source, 0))


def fetch(conn: http.client.HTTPSConnection, path: str, headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def descriptors(proxy: Platproxy) -> int:
    assert proxy.proc is not None
    return len(os.listdir(f"/proc/{proxy.proc.pid}/fd"))


def settle(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    assert callable(check) and check()


def test_one_connection_keeps_its_address_and_its_order(seeded: Seeded, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca, extra=RULES), ca.client_context())
    big = seeded.big_layer
    case = seeded.cases[IMAGE]
    manifest = f"/v2/{IMAGE.replace(':', '/manifests/')}"
    try:
        conn = connect(proxy, ca.client_context(), "127.0.0.2")
        status, headers, _ = fetch(conn, manifest, ACCEPT)  # placed by its own address
        assert status == 200 and headers["docker-content-digest"] == case.digest_of("linux/arm64/v8")
        sock = conn.sock
        for expected in ("miss", "hit"):  # a filling blob, then the stored file, on one connection
            status, headers, body = fetch(conn, f"/v2/library/big/blobs/{big.digest}")
            assert status == 200 and headers["x-platproxy-cache"] == expected
            assert "sha256:" + hashlib.sha256(body).hexdigest() == big.digest
            status, headers, _ = fetch(conn, manifest, ACCEPT)  # the next answer after the file is whole
            assert status == 200 and headers["docker-content-digest"] == case.digest_of("linux/arm64/v8")
        status, _, body = fetch(conn, f"/v2/library/big/blobs/{big.digest}", {"Range": "bytes=5-1048580"})
        assert status == 206 and body == big.data[5:1048581]
        assert conn.sock is sock  # all of it on one connection
        conn.close()
        other = connect(proxy, ca.client_context())
        status, headers, _ = fetch(other, manifest, ACCEPT)
        assert status == 200 and headers["docker-content-digest"] == case.digest_of("linux/amd64")
        other.close()
        assert "Traceback" not in proxy.log()
    finally:
        proxy.stop()


def test_clients_that_leave_or_never_speak_leave_nothing_behind(seeded: Seeded, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca, extra=RULES), ca.client_context())
    big = seeded.big_layer
    path = f"/v2/library/big/blobs/{big.digest}"
    try:
        conn = connect(proxy, ca.client_context())
        assert fetch(conn, path)[0] == 200  # stored
        conn.close()
        time.sleep(0.5)
        before = descriptors(proxy)
        for _ in range(3):  # leave after 1 MiB of a 64 MiB body
            conn = connect(proxy, ca.client_context())
            conn.request("GET", path)
            response = conn.getresponse()
            assert len(response.read(2**20)) == 2**20
            assert conn.sock is not None
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # a reset
            conn.sock.close()
            conn.close()
        silent = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(5)]  # never say hello
        for sock in silent:  # closed by the server after header_timeout (1 s here)
            sock.settimeout(5)
            assert sock.recv(1) == b""
            sock.close()
        settle(lambda: descriptors(proxy) <= before)
        conn = connect(proxy, ca.client_context())  # and the next client is served whole
        status, _, body = fetch(conn, path)
        assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == big.digest
        conn.close()
        assert "Traceback" not in proxy.log()
    finally:
        proxy.stop()


def test_a_blob_in_flight_ends_whole_when_the_server_stops(seeded: Seeded, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca), ca.client_context())
    big = seeded.big_layer
    path = f"/v2/library/big/blobs/{big.digest}"
    conn = connect(proxy, ca.client_context())
    assert fetch(conn, path)[0] == 200
    conn.request("GET", path)
    response = conn.getresponse()
    first = response.read(2**20)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(first + response.read()))
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGTERM)  # while the body is being sent
    reader.start()
    reader.join(60)
    assert got and "sha256:" + hashlib.sha256(got[0]).hexdigest() == big.digest
    assert proxy.proc.wait(30) == 0
    conn.close()
    log = proxy.log()
    assert "stopped" in log and "Traceback" not in log
