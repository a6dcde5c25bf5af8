"""TLS on the listener, with a test CA: skopeo, podman, ctr and a real Docker Engine pull with
the CA trusted (and fail without it), mutual TLS refuses a client without a certificate,
replaced certificate files reach new connections while a pull in progress completes, and
passwords in clear over a network are refused at start."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_MANIFEST
from tests.clients import containerd, ctr, engine_root, image_digest, podman, start_engine, stop_engine, storage
from tests.conftest import Seeded
from tests.registry import Platproxy, cli, config_args, free_port, request
from tests.relay import ConnectProxy
from tests.tlsfiles import TestCA, serial_of

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "engine_root", "storage"]  # fixtures
Start = Callable[..., Platproxy]
PLATFORM = "linux/amd64/v2"
IMAGE = "library/multi:1"


def tls_config(ca: TestCA, stem: str = "server", client_ca: bool = False, extra: str = "") -> str:
    pair = ca.directory / f"{stem}.crt", ca.directory / f"{stem}.key"
    if not pair[0].exists():
        ca.issue(stem)
    text = f'[tls]\ncert = "{pair[0]}"\nkey = "{pair[1]}"\n' + (f'client_ca = "{ca.path}"\n' if client_ca else "")
    return text + extra


def start_tls(seeded: Seeded, tmp_path: Path, ca: TestCA, config: str, client: ssl.SSLContext,
              env: dict[str, str] | None = None) -> Platproxy:  # fmt: skip
    cache = tmp_path / f"cache-{free_port()}"
    proxy = Platproxy(cache, seeded.registry.url, PLATFORM, config_args(tmp_path, config), log_dir=tmp_path, tls=client,
                      env=env or {})  # fmt: skip
    return proxy.start()


def skopeo_inspect(ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("skopeo")
    assert tool
    return subprocess.run([tool, "inspect", "--raw", *extra, f"docker://{ref}"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_clients_pull_through_a_tls_listener(
    seeded: Seeded, tmp_path: Path, storage: Path, containerd: Path, engine_root: Path
) -> None:
    ca = TestCA(tmp_path / "ca")
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca), ca.client_context())
    try:
        expected = seeded.cases[IMAGE].digest_of("linux/amd64")
        ref = f"{proxy.address}/{IMAGE}"
        certs = tmp_path / "certs"
        certs.mkdir()
        shutil.copy(ca.path, certs / "ca.crt")
        # skopeo and podman: the CA in their cert directory, verification on (their default)
        refused = skopeo_inspect(ref)
        assert refused.returncode != 0 and "certificate" in refused.stderr
        shown = skopeo_inspect(ref, "--cert-dir", str(certs))
        assert shown.returncode == 0, shown.stderr
        assert sha(shown.stdout) == expected
        pulled = podman(storage, "pull", "--cert-dir", str(certs), ref)
        assert pulled.returncode == 0, pulled.stderr
        assert podman(storage, "image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip() == expected
        podman(storage, "system", "reset", "--force")
        # ctr: hosts.toml names the CA
        hosts = tmp_path / "hosts" / proxy.address
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(f'server = "https://{proxy.address}"\n[host."https://{proxy.address}"]\n'
                                          f'  ca = "{ca.path}"\n')  # fmt: skip
        done = ctr(containerd, "images", "pull", "--hosts-dir", str(tmp_path / "hosts"), "--snapshotter", "native",
                   "--platform", "linux/amd64", ref)  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        assert image_digest(containerd, ref) == expected
        # Docker Engine: certs.d/<host:port>/ca.crt.  dockerd never checks certificates of a registry
        # on a loopback address, so it reaches platproxy by a name only its proxy resolves.
        name = f"platproxy.test:{proxy.port}"
        docker_certs = Path("/etc/docker/certs.d") / name
        docker_certs.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy(ca.path, docker_certs / "ca.crt")
            with ConnectProxy("platproxy.test") as tunnel:
                engine = start_engine(engine_root, env={"HTTPS_PROXY": f"http://{tunnel.address}", "NO_PROXY": ""})
                try:
                    pulled = engine.docker("pull", f"{name}/{IMAGE}")
                    assert pulled.returncode == 0, pulled.stderr + (engine.root / "dockerd.log").read_text()[-2000:]
                    shown = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", f"{name}/{IMAGE}")
                    assert expected in shown.stdout
                    (docker_certs / "ca.crt").unlink()  # without the CA the same pull is refused
                    engine.docker("rmi", f"{name}/{IMAGE}")
                    refused_docker = engine.docker("pull", f"{name}/{IMAGE}")
                    assert refused_docker.returncode != 0 and "certificate" in refused_docker.stderr
                finally:
                    stop_engine(engine)
                assert tunnel.tunnels
        finally:
            shutil.rmtree(docker_certs, ignore_errors=True)
    finally:
        proxy.stop()
    assert "Traceback" not in proxy.log()


def handshake(port: int, ctx: ssl.SSLContext) -> bytes:
    """The server certificate (DER) a new connection gets, after one request."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    conn.request("GET", "/v2/")
    assert conn.getresponse().status == 200
    assert conn.sock is not None
    der = conn.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    conn.close()
    assert der is not None
    return bytes(der)


def test_mutual_tls_refuses_a_client_without_a_certificate(seeded: Seeded, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    client = ca.issue("client", server=False)
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca, client_ca=True), ca.client_context(client))
    try:
        handshake(proxy.port, ca.client_context(client))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(proxy.port, ca.client_context())
        other = TestCA(tmp_path / "other")  # a certificate from another CA is refused too
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(proxy.port, ca.client_context(other.issue("stranger", server=False)))
        certs = tmp_path / "certs"  # skopeo: ca.crt plus client.cert / client.key
        certs.mkdir()
        shutil.copy(ca.path, certs / "ca.crt")
        shutil.copy(client.cert, certs / "client.cert")
        shutil.copy(client.key, certs / "client.key")
        shown = skopeo_inspect(f"{proxy.address}/{IMAGE}", "--cert-dir", str(certs))
        assert shown.returncode == 0, shown.stderr
    finally:
        proxy.stop()


def test_replaced_certificates_reach_new_connections_while_a_pull_completes(seeded: Seeded, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    first = ca.issue("server", serial=1001)
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca, extra='reload_interval = "0.2s"\n'), ca.client_context())
    try:
        assert serial_of(handshake(proxy.port, ca.client_context())) == 1001
        big = seeded.big_layer
        # a slow pull of the 64 MiB layer on a connection opened with the first certificate
        conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=60, context=ca.client_context())
        conn.request("GET", f"/v2/library/big/blobs/{big.digest}")
        response = conn.getresponse()
        assert response.status == 200
        digest = hashlib.sha256(response.read(1 << 20))
        # rotate as cert-manager does: new files, moved into place (the key first here)
        second = ca.issue("next", serial=2002)
        os.replace(second.key, first.key)
        time.sleep(0.6)  # a half rotation (new key, old certificate) is not loaded
        assert serial_of(handshake(proxy.port, ca.client_context())) == 1001
        os.replace(second.cert, first.cert)
        assert proxy.wait_for_log("certificate reloaded", timeout=10)
        assert serial_of(handshake(proxy.port, ca.client_context())) == 2002
        while chunk := response.read(1 << 20):  # the pull in progress completes, intact
            digest.update(chunk)
        conn.close()
        assert "sha256:" + digest.hexdigest() == big.digest
        assert "new certificate not loaded" in proxy.log()
    finally:
        proxy.stop()


def test_bad_tls_setups_are_refused_before_start(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("user:$2y$05$4ZV4cUCRvv8mWfDOJs1AcesN6ELDZbP1GGaAO0c2bGsnM1LNX9e0i\n")
    plain = tmp_path / "plain.toml"
    plain.write_text(f'listen = "0.0.0.0:{free_port()}"\n[auth]\nhtpasswd = "{htpasswd}"\n')
    for command in (["serve", "--config", str(plain)], ["config", "check", str(plain)]):
        done = cli(*command)
        assert done.returncode == 2 and "in clear" in done.stderr and "Traceback" not in done.stderr, done.stderr
    with socket.socket() as s:  # nothing was bound
        s.bind(("0.0.0.0", int(plain.read_text().split(":")[1].split('"')[0])))
    expired = ca.issue("expired", days=-1)
    mismatched = ca.issue("other")
    cases = {
        f'[tls]\ncert = "{expired.cert}"\nkey = "{expired.key}"\n': "expired",
        f'[tls]\ncert = "{expired.cert}"\nkey = "{mismatched.key}"\n': "does not match",
        f'[tls]\ncert = "{tmp_path}/missing.crt"\nkey = "{expired.key}"\n': "[tls] cert",
        f'[tls]\ncert = "{expired.cert}"\n': "go together",
    }
    for text, needle in cases.items():
        config = tmp_path / "tls.toml"
        config.write_text(text)
        for command in (["serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}"],
                        ["config", "check", str(config)]):  # fmt: skip
            done = cli(*command)
            assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_child_reaches_a_tls_tier_with_its_ca(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    children = '[resolve]\nchild_proxies = ["127.0.0.1/32"]\n'
    tier = start_tls(seeded, tmp_path, ca, tls_config(ca, extra=children), ca.client_context())
    try:
        upstream = (f'[[upstream]]\nname = "{seeded.registry.address}"\nurl = "https://{tier.address}"\nparent = true\n'
                    f'ca = "{ca.path}"\n')  # fmt: skip
        child = platproxy("", "linux/arm64", config_args(tmp_path, upstream))
        status, headers, _ = request(child.port, "GET", f"/v2/{IMAGE.replace(':', '/manifests/')}",
                                     headers={"Accept": OCI_MANIFEST})  # fmt: skip
        assert status == 200 and headers["docker-content-digest"] == seeded.cases[IMAGE].digest_of("linux/arm64/v8")
        bad = tmp_path / "bad.toml"
        bad.write_text(upstream.replace(str(ca.path), str(tmp_path / "missing.pem")))
        done = cli("config", "check", str(bad))
        assert done.returncode == 2 and "[[upstream]] 0 ca" in done.stderr, done.stderr
    finally:
        tier.stop()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_cached_blob_over_tls_is_whole_and_ranges_are_exact_under_each_loop(
    seeded: Seeded, tmp_path: Path, loop: str
) -> None:
    """The TLS send path (the relay thread reading and encrypting the file) under both event loops:
    the whole 64 MiB layer hashes to its digest, and a Range is exactly its bytes."""
    ca = TestCA(tmp_path / "ca")
    proxy = start_tls(seeded, tmp_path, ca, tls_config(ca), ca.client_context(), env={"PLATPROXY_LOOP": loop})
    big = seeded.big_layer
    path = f"/v2/library/big/blobs/{big.digest}"
    try:
        assert f"event loop {loop}" in proxy.log()

        def get(headers: dict[str, str]) -> tuple[int, bytes]:
            conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=120, context=ca.client_context())
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            return response.status, body

        for _ in range(2):  # the first fills the cache, the second is sent from the stored file
            status, body = get({})
            assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == big.digest
        start, end = 1_000_003, 5 * 2**20 + 17
        status, body = get({"Range": f"bytes={start}-{end}"})
        assert status == 206 and body == big.data[start : end + 1]
    finally:
        proxy.stop()
