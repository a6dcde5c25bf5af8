"""Which upstream and repository a name routes to: ns, prefixes, the default, selectors (pure)."""

from __future__ import annotations

import pytest

from proxy.config import Config, UpstreamConfig
from proxy.errors import PlatproxyError
from proxy.http.errors import answer_for
from proxy.pull.route import route

SHA = "sha256:" + "a" * 64


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
