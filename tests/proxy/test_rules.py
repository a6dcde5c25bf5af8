"""Pure pieces of the proxy: names, routing, freshness, ranges, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import Config, ConfigError, UpstreamConfig, load_config, upstream_from_url
from proxy.errors import PlatproxyError, UpstreamError
from proxy.http.errors import answer_for
from proxy.http.ranges import ByteRange, parse_range
from proxy.oci.names import ImageRef, check_digest, check_name, check_tag
from proxy.pull.freshness import Action, Freshness, after_revalidation, freshness
from proxy.pull.route import route
from proxy.registry.auth import registrable_domain
from proxy.registry.client import ManifestHead
from proxy.storage.records import TagRecord

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize("name", ["library/alpine", "a", "ghcr.io/o/r", "a-b/c__d/e.f", "x" * 255])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a//b", "a/../b", "..", "a/", "/a", "a_", "x" * 256, "a b", "a\x00"])
def test_bad_names(name: str) -> None:
    with pytest.raises(PlatproxyError) as info:
        check_name(name)
    assert answer_for(info.value).code == "NAME_INVALID"


@pytest.mark.parametrize(
    ("digest", "ok"),
    [(SHA, True), ("sha512:" + "b" * 128, True), ("sha256:" + "A" * 64, False), ("sha256:abc", False),
     ("md5:" + "a" * 32, False), ("sha256:../x", False), ("", False)],
)  # fmt: skip
def test_digests(digest: str, ok: bool) -> None:
    if ok:
        assert check_digest(digest) == digest
    else:
        with pytest.raises(PlatproxyError):
            check_digest(digest)


def test_tags() -> None:
    assert check_tag("3.20") == "3.20" and check_tag("_x") == "_x"
    for bad in ("", ".x", "-x", "t" * 129, "a/b"):
        with pytest.raises(PlatproxyError):
            check_tag(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", ("docker.io", "library/alpine", "latest")),
        ("alpine:3.20", ("docker.io", "library/alpine", "3.20")),
        ("ghcr.io/o/r:tag", ("ghcr.io", "o/r", "tag")),
        ("localhost:5000/x/y", ("localhost:5000", "x/y", "latest")),
        ("user/repo@" + SHA, ("docker.io", "user/repo", SHA)),
    ],
)
def test_image_references(text: str, expected: tuple[str, str, str]) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.name, ref.reference) == expected


CONFIG = Config(
    upstreams=(
        UpstreamConfig(name="docker.io", url="https://registry-1.docker.io"),
        UpstreamConfig(name="ghcr.io", url="https://ghcr.io"),
        UpstreamConfig(name="127.0.0.1:5001", url="http://127.0.0.1:5001"),
    )
)


@pytest.mark.parametrize(
    ("name", "ns", "upstream", "repo"),
    [
        ("alpine", None, "docker.io", "library/alpine"),
        ("library/alpine", "docker.io", "docker.io", "library/alpine"),
        ("alpine", "index.docker.io", "docker.io", "library/alpine"),
        ("o/r", "ghcr.io", "ghcr.io", "o/r"),
        ("ghcr.io/o/r", None, "ghcr.io", "o/r"),
        ("docker.io/nginx", None, "docker.io", "library/nginx"),
        ("x/y", "127.0.0.1:5001", "127.0.0.1:5001", "x/y"),
        ("user/app", None, "docker.io", "user/app"),
    ],
)
def test_routing(name: str, ns: str | None, upstream: str, repo: str) -> None:
    r = route(name, ns, CONFIG)
    assert (r.upstream.name, r.repo, r.selector) == (upstream, repo, "")


@pytest.mark.parametrize(
    ("name", "ns", "upstream", "repo", "selector"),
    [
        ("platform.linux.arm64.v8/library/alpine", None, "docker.io", "library/alpine", "linux/arm64/v8"),
        ("platform.linux.arm64.v8/alpine", None, "docker.io", "library/alpine", "linux/arm64/v8"),
        ("platform.linux.s390x/ghcr.io/o/r", None, "ghcr.io", "o/r", "linux/s390x"),
        ("platform.all/o/r", "ghcr.io", "ghcr.io", "o/r", "all"),
        ("platform.linux.aarch64/x", None, "docker.io", "library/x", "linux/arm64/v8"),  # normalized
        ("platformer/x", None, "docker.io", "platformer/x", ""),
        ("platform.linux.arm64", None, "docker.io", "library/platform.linux.arm64", ""),  # a name, not a prefix
    ],
)
def test_a_platform_selector_in_the_name(name: str, ns: str | None, upstream: str, repo: str, selector: str) -> None:
    r = route(name, ns, CONFIG)
    assert (r.upstream.name, r.repo, r.selector, r.client_name) == (upstream, repo, selector, name)


@pytest.mark.parametrize("name", ["platform.linux.amd65/x", "platform.linux.amd64.v7/x", "platform./x",
                                  "platform.lnux.arm64/x"])  # fmt: skip
def test_a_bad_selector_is_a_name_error_that_says_why(name: str) -> None:
    with pytest.raises(PlatproxyError) as info:
        route(name, None, CONFIG)
    answer = answer_for(info.value)
    assert answer.status == 400 and b"NAME_INVALID" in answer.body() and b"platform selector" in answer.body()


def test_unknown_ns_is_refused() -> None:
    with pytest.raises(PlatproxyError) as info:
        route("x", "evil.example.com", CONFIG)
    assert answer_for(info.value).status == 404


def record(checked_at: float, upstream_digest: str = SHA) -> TagRecord:
    return TagRecord("u", "r", "t", "h", SHA, "m", upstream_digest, None, "", "", "", 0.0, checked_at)


def test_freshness() -> None:
    assert freshness(None, 100, 60) is Freshness.MISS
    assert freshness(record(50), 100, 60) is Freshness.FRESH
    assert freshness(record(40), 100, 60) is Freshness.STALE
    assert freshness(record(100), 100, 0) is Freshness.STALE


@pytest.mark.parametrize(
    ("answer", "stale_on_404", "action"),
    [
        (ManifestHead(SHA, "m", 1), True, Action.KEEP),
        (ManifestHead("sha256:" + "b" * 64, "m", 1), True, Action.REFETCH),
        (None, True, Action.REFETCH),
        (UpstreamError("u", None, "down"), True, Action.SERVE_STALE),
        (UpstreamError("u", 503, "x"), True, Action.SERVE_STALE),
        (UpstreamError("u", 429, "x", "5"), True, Action.SERVE_STALE),
        (UpstreamError("u", 404, "x"), True, Action.SERVE_STALE),
        (UpstreamError("u", 404, "x"), False, Action.GONE),
    ],
)
def test_after_revalidation(answer: ManifestHead | UpstreamError | None, stale_on_404: bool, action: Action) -> None:
    assert after_revalidation(record(0), answer, stale_on_404) is action


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [(None, 100, None), ("bytes=0-9", 100, ByteRange(0, 10)), ("bytes=90-", 100, ByteRange(90, 100)),
     ("bytes=-10", 100, ByteRange(90, 100)), ("bytes=50-500", 100, ByteRange(50, 100)),
     ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=0-9", None, None)],
)  # fmt: skip
def test_ranges(header: str | None, size: int | None, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


def test_unsatisfiable_range() -> None:
    with pytest.raises(PlatproxyError) as info:
        parse_range("bytes=100-", 100)
    assert answer_for(info.value).status == 416


@pytest.mark.parametrize(
    ("host", "domain"),
    [("auth.docker.io", "docker.io"), ("registry-1.docker.io", "docker.io"), ("127.0.0.1", "127.0.0.1"),
     ("localhost", "localhost"), ("ghcr.io", "ghcr.io")],
)  # fmt: skip
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('listen = "nowhere"', "config key listen: expected HOST:PORT"),
        ('[cache]\ntag_ttl = "soon"', "config key [cache] tag_ttl: expected a duration"),
        ('[limits]\nmax_manifest_size = "big"', "config key [limits] max_manifest_size: expected a size"),
        ('[[upstream]]\nname = "x"\nurl = "ftp://x"', "config key [[upstream]] 0 url"),
        ('[[upstream]]\nname = "x"\nurl = "http://example.com"', "plain http to example.com is refused"),
        ('[platform]\nia32 = "maybe"', "config key [platform] ia32"),
        ("[resolve]\nlist_aware_clients = 3", "config key [resolve] list_aware_clients"),
        ("lisen = 1", "unknown key `lisen` in the top level; did you mean `listen`? (known: listen, upstreams,"),
        ("[cache]\nmax_sise = 1", "unknown key `max_sise` in [cache]; did you mean `max_size`? (known: dir, tag_ttl"),
        ('[[upstream]]\nname = "x"\nurl = "http://127.0.0.1:1"\nuser = "u"', "unknown key `user` in [upstream #1]"),
        ('[store.s3]\nbuckt = "b"', "unknown key `buckt` in [store.s3]; did you mean `bucket`?"),
        ("[cache]\nmax_size = -5", "config key [cache] max_size: -5 is negative: a size is 0 or more"),
        ('[cache]\nmax_size = "-5MiB"', "config key [cache] max_size: expected a size"),
        ("[cache]\ntag_ttl = -1", "config key [cache] tag_ttl: -1 is negative"),
        ('[limits]\nread_timeout = "0s"', "config key [limits] read_timeout: must be more than 0"),
        ("[limits]\nmax_manifest_size = 0", "config key [limits] max_manifest_size: must be more than 0"),
        ("[store.s3]\nlease_ttl = 0", "config key [store.s3] lease_ttl: must be more than 0"),
        (
            '[platform]\noverride = "linux/amd65"',
            "config key [platform] override: unknown architecture 'amd65' in 'linux/amd65' "
            "(did you mean 'linux/amd64'?)",
        ),
        (
            '[platform]\noverride = "linux/amd64/v7"',
            "amd64 has no variant 'v7' in 'linux/amd64/v7' (did you mean 'linux/amd64'?)",
        ),
        (
            '[[clients]]\ncidr = "10.0.0.0/8"\nplatform = "lnux/arm64"',
            "unknown os 'lnux' in 'lnux/arm64' (did you mean 'linux/arm64'?)",
        ),
        (
            '[[upstream]]\nname = "x"\nurl = "http://127.0.0.1:5001/v2/"',
            "config key [[upstream]] 0 url: 'http://127.0.0.1:5001/v2/' has a path; give the registry's root "
            "(http://127.0.0.1:5001) and drop /v2/: platproxy adds it",
        ),
        (
            '[[upstream]]\nname = "x"\nurl = "https://r.example/artifactory/api"',
            "give the registry's root (https://r.example)",
        ),
        (
            '[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "passthrough"\nusername = "u"\npassword = "p"',
            'auth = "passthrough" pulls with each client\'s own credentials: remove username and password',
        ),
        ('[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "client"', "config key [[upstream]] 0 auth"),
        (
            '[auth]\nhtpasswd = "/etc/h"\n[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "passthrough"',
            "a client can send only one",
        ),
        (
            'listen = "0.0.0.0:5000"\n[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "passthrough"',
            "upstream x (auth = passthrough) on 0.0.0.0:5000 without [tls] would take passwords in clear",
        ),
        ('[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth_remember = "0s"', "must be more than 0"),
        (
            '[store.s3]\naccess_key = "AKIA"',
            "[store.s3] access_key is set but [store.s3] secret_key is not: set both (either from "
            "PLATPROXY_STORE__S3__SECRET_KEY), or neither to use botocore's chain",
        ),
        ('[store.s3]\nsecret_key = "s"', "[store.s3] secret_key is set but [store.s3] access_key is not"),
        (
            '[store.s3]\nendpoint = "http://rgw.cluster.local:7480"',
            "plain http to rgw.cluster.local is refused for the store; use https, or set "
            "store.s3.insecure_http = true on a trusted network",
        ),
        (
            '[store.s3]\nbucket = "My_Mirror"',
            "config key [store.s3] bucket: 'My_Mirror' is not a bucket name: 3 to 63 characters of lower-case",
        ),
        ('[store.s3]\nprefix = "a b/"', "config key [store.s3] prefix: 'a b/' is not a key prefix"),
        ('[store.s3]\nprefix = "/abs/"', "is not a key prefix"),
        ("not toml [", "not valid TOML"),
        ('default_upstream = "nope"', "default_upstream 'nope' is not the name of an upstream"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert needle in str(info.value)


def test_zero_keeps_its_documented_meaning(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[cache]\ntag_ttl = 0\nmax_size = 0\n")  # always revalidate; no budget
    config = load_config(path, env={})
    assert (config.cache.tag_ttl, config.cache.max_size) == (0, 0)


def test_origins_name_the_variable_that_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cache]\ndir = "/srv/a"\n')
    origins: dict[str, str] = {}
    config = load_config(path, {"listen": "127.0.0.1:6000"}, env={"PLATPROXY_CACHE__DIR": "/srv/b"}, origins=origins)
    assert config.cache.dir == "/srv/b"
    assert origins == {"cache.dir": 'PLATPROXY_CACHE__DIR, over the file\'s "/srv/a"', "listen": "a command-line flag"}


def test_upstream_flag_takes_an_ipv6_address() -> None:
    upstream = upstream_from_url("http://[::1]:5001")
    assert (upstream.name, upstream.url) == ("[::1]:5001", "http://[::1]:5001")
    with pytest.raises(ConfigError, match=r"--upstream http://\[::1\]:5001/v2/: .* drop /v2/"):
        upstream_from_url("http://[::1]:5001/v2/")


def test_config_example_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config.example.toml")
    assert config.listen == "127.0.0.1:5000" and config.upstreams[0].name == "docker.io"


def test_store_settings_an_operator_gets_right_first_time(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[store.s3]\nendpoint = "http://rgw.cluster.local:7480"\ninsecure_http = true\n'
                    'prefix = "platproxy"\nbucket = "registry-mirror"\n')  # fmt: skip
    s3 = load_config(path, env={}).store.s3
    assert s3.prefix == "platproxy/" and s3.endpoint == "http://rgw.cluster.local:7480"
    path.write_text('[store.s3]\naccess_key = "AKIA"\nsecret_key = "s"\nprefix = ""\n')
    assert load_config(path, env={}).store.s3.prefix == ""
