"""Private images through the mirror with each client's own credentials (``auth = "passthrough"``).

The upstream is a real Distribution 2.8 with ``auth: token``, the scheme Docker Hub, GHCR and
Quay use (a bearer token from a token service, scoped per repository), backed by a small token
server (``tests/tokenserver.py``): alice may pull ``team-a/*``, bob ``team-b/*``, anyone
``public/*``.  Clients are real skopeo with ``--src-creds``; the cache is never an oracle:
what one client pulled is served to another only after the upstream said yes to that one.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.clients import containerd, ctr, engine_root, image_digest, podman, start_engine, stop_engine, storage
from tests.conftest import Seeded, skopeo_copy
from tests.registry import Platproxy, Registry, config_args, request
from tests.tokenserver import USERS, TokenUpstream, basic, passthrough_config

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "engine_root", "storage"]  # fixtures
Start = Callable[..., Platproxy]
REMEMBER = 4.0


def passthrough(registry: Registry, remember: float = REMEMBER) -> str:
    return passthrough_config(registry, remember)


def pull(proxy: Platproxy, name: str, dest: Path, user: str | None) -> subprocess.CompletedProcess[str]:
    creds = ["--src-creds", f"{user}:{USERS[user][0]}"] if user else ["--src-no-creds"]
    return skopeo_copy(f"{proxy.address}/{name}", dest, *creds)


def test_each_client_gets_its_own_images_and_never_anothers_from_the_cache(
    token_upstream: TokenUpstream, platproxy: Start, tmp_path: Path
) -> None:
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, passthrough(token_upstream.registry)))
    done = pull(proxy, "team-a/app:1", tmp_path / "a", "alice")
    assert done.returncode == 0, done.stderr
    done = pull(proxy, "team-b/app:1", tmp_path / "b", "bob")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    # bob's image is cached now (the very same bytes as alice's): alice is still refused it
    refused = pull(proxy, "team-b/app:1", tmp_path / "ab", "alice")
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "401" in refused.stderr, refused.stderr
    for name in ("team-a/app:1", "team-b/app:1"):
        anonymous = pull(proxy, name, tmp_path / "anon", None)
        assert anonymous.returncode != 0, name
    public = pull(proxy, "public/app:1", tmp_path / "public", None)
    assert public.returncode == 0, public.stderr
    log = proxy.log()
    assert '"auth": "refused"' in log and '"auth": "challenged"' in log and '"auth": "public' in log


@pytest.fixture
def own_upstream(seeded: Seeded, tmp_path: Path) -> Iterator[TokenUpstream]:
    """A token-auth upstream of this test's own, to stop."""
    upstream = TokenUpstream.start(tmp_path / "own", seeded.cases["library/multi:1"], ("team-a/app:1", "public/app:1"))
    try:
        yield upstream
    finally:
        upstream.stop()


def test_with_the_upstream_down_a_client_is_served_within_the_window_and_refused_after(
    own_upstream: TokenUpstream, platproxy: Start, tmp_path: Path
) -> None:
    remember = 8.0
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, passthrough(own_upstream.registry, remember)))
    checked = time.monotonic()
    assert pull(proxy, "team-a/app:1", tmp_path / "a1", "alice").returncode == 0
    assert pull(proxy, "public/app:1", tmp_path / "p1", None).returncode == 0
    own_upstream.registry.stop()
    own_upstream.tokens.stop()  # the whole upstream is down: registry and token service
    again = pull(proxy, "team-a/app:1", tmp_path / "a2", "alice")
    assert time.monotonic() - checked < remember, "too slow to test the window"
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a2" / "manifest.json").read_bytes() == (tmp_path / "a1" / "manifest.json").read_bytes()
    # bob was never let in: nothing is remembered for him, and nothing can be checked now
    assert pull(proxy, "team-a/app:1", tmp_path / "b", "bob").returncode != 0
    time.sleep(max(0.0, checked + remember + 0.5 - time.monotonic()))
    after = pull(proxy, "team-a/app:1", tmp_path / "a3", "alice")
    assert after.returncode != 0
    log = proxy.log()
    assert "offline token" in log
    assert '"status": 503' in log and '"auth": "unchecked, upstream unreachable"' in log
    # a repository last seen public is still served to anyone
    public = pull(proxy, "public/app:1", tmp_path / "p2", None)
    assert public.returncode == 0, public.stderr


def test_two_authorized_clients_of_one_cold_private_blob_make_one_upstream_fetch(
    seeded: Seeded, own_upstream: TokenUpstream, platproxy: Start, tmp_path: Path
) -> None:
    big = seeded.big_layer
    own_upstream.registry.stop()
    own_upstream.registry.auth = ""
    own_upstream.registry.start()
    own_upstream.registry.push_blob("team-a/big", big)
    own_upstream.registry.stop()
    own_upstream.registry.auth = own_upstream.tokens.registry_auth()
    own_upstream.registry.start()
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, passthrough(own_upstream.registry)))
    scope = "repository:team-a/big:pull"
    headers = [{"Authorization": f"Bearer {own_upstream.tokens.token(user, scope)}"} for user in ("alice", "carol")]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda h: request(proxy.port, "GET", f"/v2/team-a/big/blobs/{big.digest}", None, h),
                                headers))  # fmt: skip
    for status, _, body in answers:
        assert status == 200
        assert body == big.data
    assert own_upstream.registry.requests_for(f"/blobs/{big.digest}", "GET") == 1
    # bob is not let in to it, cached as it is
    bob = {"Authorization": f"Bearer {own_upstream.tokens.token('bob', scope)}"}
    status, headers_seen, _ = request(proxy.port, "GET", f"/v2/team-a/big/blobs/{big.digest}", None, bob)
    assert status == 401
    assert headers_seen["www-authenticate"].startswith("Bearer realm=")


def test_credentials_are_nowhere_but_in_memory(token_upstream: TokenUpstream, platproxy: Start, tmp_path: Path) -> None:
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, passthrough(token_upstream.registry)))
    for user, name in (("alice", "team-a/app:1"), ("bob", "team-b/app:1"), ("bob", "team-a/app:1")):
        pull(proxy, name, tmp_path / f"{user}-{name.replace('/', '-')}", user)
    _, _, metrics = request(proxy.port, "GET", "/metrics")
    secrets = token_upstream.secrets()
    assert len(secrets) > 12
    places = {"log": proxy.log().encode(), "metrics": metrics}
    for path in proxy.cache_dir.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert any(name.endswith("index.db") for name in places)
    for where, data in places.items():
        assert not [s for s in secrets if s in data], f"a credential is in {where}"


def test_the_relay_maps_scopes_and_a_foreign_token_service_is_never_given_credentials(
    token_upstream: TokenUpstream, platproxy: Start, tmp_path: Path
) -> None:
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, passthrough(token_upstream.registry)))
    status, headers, _ = request(proxy.port, "GET", "/v2/")
    challenge = headers["www-authenticate"]
    assert status == 401 and challenge.startswith(f'Bearer realm="http://{proxy.address}/auth/token"')
    status, headers, _ = request(proxy.port, "GET", "/v2/team-a/app/manifests/1")
    assert status == 401 and 'scope="repository:team-a/app:pull"' in headers["www-authenticate"]
    # the relay, as Docker and skopeo use it: GET with basic credentials
    path = "/auth/token?service=x&scope=repository:private.test/team-a/app:pull"
    status, _, body = request(proxy.port, "GET", path, None, {"Authorization": basic("alice")})
    assert status == 200
    assert token_upstream.tokens.seen[-1].scopes == ["repository:team-a/app:pull"]  # prefix routed, mapped
    assert token_upstream.tokens.seen[-1].granted == ["team-a/app"]
    token = json.loads(body)["token"]
    accept = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.index.v1+json"}
    status, headers, _ = request(proxy.port, "GET", "/v2/team-a/app/manifests/1", None, accept)
    assert status == 200 and headers["cache-control"] == "private"  # no shared HTTP cache may keep it
    assert "(clients' own credentials)" in proxy.log()  # the banner says how the upstream is pulled
    status, headers, _ = request(proxy.port, "GET", "/v2/public/app/manifests/1", None, {"Accept": accept["Accept"]})
    assert status == 200 and headers.get("cache-control") != "private"
    # containerd's OAuth2 password grant (POST), with a wrong password: the upstream's 401 relayed
    form = b"grant_type=password&username=alice&password=wrong&scope=repository:team-a/app:pull&service=x"
    status, _, _ = request(proxy.port, "POST", "/auth/token", form,
                           {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 401
    assert token_upstream.tokens.seen[-1].user == "alice" and token_upstream.tokens.seen[-1].granted == []
    # /v2/ with credentials: the upstream's verdict on them (docker login to the mirror)
    assert request(proxy.port, "GET", "/v2/", None, {"Authorization": basic("alice")})[0] == 200
    wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
    assert request(proxy.port, "GET", "/v2/", None, {"Authorization": wrong})[0] == 401


def test_podman_and_containerd_pull_with_their_own_credentials(
    token_upstream: TokenUpstream, platproxy: Start, storage: Path, containerd: Path, tmp_path: Path
) -> None:
    """podman (containers/image: GET to the token service) and containerd (an OAuth2 password grant
    by POST first): each login works through the relay, and is refused another team's image."""
    proxy = platproxy("", "linux/arm64", config_args(tmp_path, passthrough(token_upstream.registry)))
    arm64 = token_upstream.case.digest_of("linux/arm64/v8")
    image = f"{proxy.address}/team-a/app:1"
    pulled = podman(storage, "pull", "--tls-verify=false", "--creds", f"alice:{USERS['alice'][0]}", image)
    assert pulled.returncode == 0, pulled.stderr
    refused = podman(storage, "pull", "--tls-verify=false", "--creds", f"bob:{USERS['bob'][0]}", image)
    assert refused.returncode != 0
    # a registries.conf mirror of the registry: podman presents its login for the mirror's own host
    address = token_upstream.registry.address
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "{address}"\nlocation = "{address}"\ninsecure = true\n'
                    f'[[registry.mirror]]\nlocation = "{proxy.address}"\ninsecure = true\n')  # fmt: skip
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf), "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    login = podman(storage, "login", "--tls-verify=false", "-u", "alice", "-p", USERS["alice"][0], proxy.address,
                   env=env)  # fmt: skip
    assert login.returncode == 0, login.stderr  # checked with the upstream: /v2/ relays the verdict
    before = proxy.log().count('"auth": "private')
    assert podman(storage, "pull", f"{address}/team-b/app:1", env=env).returncode != 0  # not alice's
    pulled = podman(storage, "pull", f"{address}/team-a/app:1", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert proxy.log().count('"auth": "private') > before  # the mirror served it, with alice's login
    podman(storage, "system", "reset", "--force")
    posts = sum(1 for s in token_upstream.tokens.seen if s.method == "POST")
    done = ctr(containerd, "images", "pull", "--plain-http", "--snapshotter", "native", "--platform", "linux/arm64",
               "--user", f"carol:{USERS['carol'][0]}", image)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert image_digest(containerd, image) == arm64
    assert sum(1 for s in token_upstream.tokens.seen if s.method == "POST" and s.user == "carol") > posts
    # through a hosts.toml mirror of the registry: ctr hands the registry's login to the mirror host
    hosts = tmp_path / "certs.d" / token_upstream.registry.address
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(f'[host."http://{proxy.address}"]\n  capabilities = ["pull", "resolve"]\n')
    upstream_name = f"{token_upstream.registry.address}/team-a/app:1"
    through_mirror = proxy.log().count('"path": "/v2/team-a/app/manifests/1"')
    done = ctr(containerd, "images", "pull", "--hosts-dir", str(tmp_path / "certs.d"), "--snapshotter", "native",
               "--platform", "linux/arm64", "--user", f"alice:{USERS['alice'][0]}", upstream_name)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert proxy.wait_for_log('"path": "/v2/team-a/app/manifests/1"') > through_mirror  # (with ?ns=)
    done = ctr(containerd, "images", "pull", "--hosts-dir", str(tmp_path / "certs.d"), "--snapshotter", "native",
               "--platform", "linux/arm64", "--user", f"bob:{USERS['bob'][0]}", upstream_name)  # fmt: skip
    assert done.returncode != 0


def test_docker_sends_its_docker_hub_login_to_its_registry_mirror(
    token_upstream: TokenUpstream, tmp_path: Path, engine_root: Path
) -> None:
    """Docker Engine with platproxy as its ``registry-mirrors`` entry: the login ``docker login``
    keeps for Docker Hub is what it presents to the mirror, through the relay."""
    config = tmp_path / "hub.toml"
    registry = token_upstream.registry
    config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{registry.url}"\nauth = "passthrough"\n')
    proxy = Platproxy(tmp_path / "cache", "", extra=["--config", str(config)], log_dir=tmp_path).start()
    engine = start_engine(engine_root, f"http://{proxy.address}")
    try:
        client = engine_root / "client"
        client.mkdir(exist_ok=True)
        login = {"auths": {"https://index.docker.io/v1/": {"auth": basic("alice").split()[1]}}}
        (client / "config.json").write_text(json.dumps(login))
        pulled = engine.docker("pull", "team-a/app:1")
        assert pulled.returncode == 0, pulled.stderr + (engine_root / "dockerd.log").read_text()[-2000:]
        assert proxy.wait_for_log('"auth": "private') >= 1
        refused = engine.docker("pull", "team-b/app:1")
        assert refused.returncode != 0
        assert any(s.user == "alice" for s in token_upstream.tokens.seen)
    finally:
        stop_engine(engine)
        proxy.stop()
    assert "Traceback" not in proxy.log()
