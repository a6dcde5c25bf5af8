"""Upstreams behind a corporate forward proxy: ``proxy = URL`` per upstream, or ``proxy = "env"``
for ``HTTPS_PROXY``/``NO_PROXY``.  The upstream is a real Distribution registry (TLS and basic
auth, as a private registry runs) under a name only the proxy can resolve, so a pull that works
went through the proxy; the proxy keeps every request head it read, so the test sees what it saw."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.conftest import Seeded, push_case, skopeo_copy
from tests.registry import Platproxy, Registry, cli, config_args, request
from tests.relay import ConnectProxy
from tests.tlsfiles import TestCA

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]
NAME = "platproxy.test"  # on the registry's certificate; nothing but the proxy resolves it
PASSWORD = "s3cret-for-the-upstream-only"


@pytest.fixture
def private(seeded: Seeded, tmp_path: Path) -> Iterator[tuple[Registry, TestCA]]:
    """The test registry's image, served over TLS with basic auth (seeded plain, then restarted)."""
    registry = Registry(tmp_path / "private").start()
    push_case(registry, "team/app:1", seeded.cases["library/multi:1"])
    registry.stop()
    ca = TestCA(tmp_path / "ca")
    pair = ca.issue("registry")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"puller:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    registry.tls, registry.htpasswd = (pair.cert, pair.key), htpasswd
    registry.start()
    try:
        yield registry, ca
    finally:
        registry.stop()


def upstream(registry: Registry, ca: TestCA, proxy: str) -> str:
    return (f'[[upstream]]\nname = "corp"\nurl = "https://{NAME}:{registry.port}"\nusername = "puller"\n'
            f'password = "{PASSWORD}"\nca = "{ca.path}"\nproxy = "{proxy}"\n')  # fmt: skip


def test_a_tls_upstream_through_a_proxy_never_shows_it_the_credentials(
    seeded: Seeded, private: tuple[Registry, TestCA], platproxy: Start, tmp_path: Path
) -> None:
    registry, ca = private
    with ConnectProxy(NAME) as forward:
        proxy = platproxy("", "linux/arm64", config_args(tmp_path, upstream(registry, ca, f"http://{forward.address}")))
        done = skopeo_copy(f"{proxy.address}/corp/team/app:1", tmp_path / "pulled")
        assert done.returncode == 0, done.stderr
        chosen = seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
        assert json.loads((tmp_path / "pulled" / "manifest.json").read_bytes())  # the image arrived
        assert proxy.wait_for_log(chosen) >= 1
        assert forward.tunnels and set(forward.tunnels) == {f"{NAME}:{registry.port}"}
        seen = b"".join(forward.heads)
        assert all(h.startswith(b"CONNECT ") for h in forward.heads)  # only tunnels: the rest is encrypted
        assert b"uthorization" not in seen and PASSWORD.encode() not in seen
    assert PASSWORD not in proxy.log()
    status, _, _ = request(proxy.port, "GET", "/v2/corp/team/app/manifests/1")
    assert status == 200  # cached: the proxy is gone, the answer is not


def test_proxy_env_follows_https_proxy_and_no_proxy(private: tuple[Registry, TestCA], tmp_path: Path) -> None:
    registry, ca = private
    config = tmp_path / "env.toml"
    config.write_text(upstream(registry, ca, "env"))
    with ConnectProxy(NAME) as forward:
        environments = {
            "through": {"HTTPS_PROXY": f"http://{forward.address}", "NO_PROXY": "localhost"},
            "bypassed": {"HTTPS_PROXY": f"http://{forward.address}", "NO_PROXY": f"localhost,{NAME}"},
        }
        for case, env in environments.items():
            proxy = Platproxy(tmp_path / case, "", extra=["--config", str(config)], log_dir=tmp_path, env=env).start()
            try:
                status, _, _ = request(proxy.port, "GET", "/v2/corp/team/app/manifests/1")
                assert status == (200 if case == "through" else 503), case  # bypassed: the name does not resolve
            finally:
                proxy.stop()
        assert len(forward.tunnels) >= 1


def test_the_environment_is_ignored_unless_asked_and_credentials_never_go_in_clear(
    private: tuple[Registry, TestCA], tmp_path: Path
) -> None:
    registry, ca = private
    config = tmp_path / "direct.toml"
    config.write_text(upstream(registry, ca, ""))  # no proxy setting: HTTPS_PROXY has no effect
    with ConnectProxy(NAME) as forward:
        env = {"HTTPS_PROXY": f"http://{forward.address}"}
        proxy = Platproxy(tmp_path / "direct", "", extra=["--config", str(config)], log_dir=tmp_path, env=env).start()
        try:
            assert request(proxy.port, "GET", "/v2/corp/team/app/manifests/1")[0] == 503
        finally:
            proxy.stop()
        assert forward.heads == []
    clear = tmp_path / "clear.toml"
    clear.write_text(f'[[upstream]]\nname = "corp"\nurl = "http://127.0.0.1:{registry.port}"\nusername = "u"\n'
                     f'password = "p"\nproxy = "http://127.0.0.1:3128"\n')  # fmt: skip
    done = cli("config", "check", str(clear))
    assert done.returncode == 2 and "a proxy would see this upstream's credentials" in done.stderr
    masked = tmp_path / "masked.toml"
    masked.write_text(
        '[[upstream]]\nname = "corp"\nurl = "https://r.example"\nproxy = "http://me:pw@proxy.corp:3128"\n'
    )
    shown = cli("config", "check", str(masked))
    assert shown.returncode == 0 and "pw" not in shown.stdout and "http://me:***@proxy.corp:3128" in shown.stdout


def test_a_plain_http_upstream_through_a_proxy(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "plain").start()
    push_case(registry, "team/app:1", seeded.cases["library/multi:1"])
    try:
        with ConnectProxy(NAME) as forward:
            text = (f'[[upstream]]\nname = "corp"\nurl = "http://{NAME}:{registry.port}"\ninsecure_http = true\n'
                    f'proxy = "http://{forward.address}"\n')  # fmt: skip
            proxy = platproxy("", "linux/arm64", config_args(tmp_path, text))
            oci = {"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"}
            status, headers, _ = request(proxy.port, "GET", "/v2/corp/team/app/manifests/1", headers=oci)
            assert status == 200
            assert headers["docker-content-digest"] == seeded.cases["library/multi:1"].digest_of("linux/arm64/v8")
            assert any(h.startswith(f"GET http://{NAME}:{registry.port}/v2/".encode()) for h in forward.heads)
    finally:
        registry.stop()
