"""The passthrough edge's pure parts: a token request's scopes rewritten through the same routing
as a pull, where the client reached platproxy, and whose login a token request is."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from proxy.config import load_config
from proxy.errors import InvalidName
from proxy.http.passthrough import _login, map_scopes, origin
from proxy.registry.credentials import basic_digest, credential_digest

CONFIG = load_config(None, {"upstreams": [
    {"name": "docker.io", "url": "https://registry-1.docker.io", "auth": "passthrough"},
    {"name": "ghcr.io", "url": "https://ghcr.io", "auth": "passthrough"},
], "auth.allow_plain_http": True})  # fmt: skip


def test_scopes_name_the_upstreams_repositories_pull_only() -> None:
    upstream, scopes = map_scopes(["repository:alpine:pull,push", "registry:catalog:*"], None, CONFIG)
    assert (upstream.name, scopes) == ("docker.io", ["repository:library/alpine:pull"])
    upstream, scopes = map_scopes(["repository:ghcr.io/o/r:pull"], None, CONFIG)
    assert (upstream.name, scopes) == ("ghcr.io", ["repository:o/r:pull"])
    upstream, scopes = map_scopes(["repository:o/r:pull"], "ghcr.io", CONFIG)  # containerd's ns
    assert (upstream.name, scopes) == ("ghcr.io", ["repository:o/r:pull"])
    upstream, scopes = map_scopes([], None, CONFIG)  # a login: the default upstream, no scope
    assert (upstream.name, scopes) == ("docker.io", [])


def test_one_token_request_cannot_span_two_upstreams() -> None:
    with pytest.raises(InvalidName, match="two upstreams"):
        map_scopes(["repository:alpine:pull", "repository:ghcr.io/o/r:pull"], None, CONFIG)


def test_the_origin_a_client_reached_believes_only_well_formed_values() -> None:
    plain = make_mocked_request("GET", "/v2/", headers={"Host": "mirror.example:5000"})
    assert origin(plain, CONFIG) == "http://mirror.example:5000"
    behind_tls = make_mocked_request("GET", "/v2/", headers={"Host": "mirror.example", "X-Forwarded-Proto": "https"})
    assert origin(behind_tls, CONFIG) == "https://mirror.example"
    hostile = make_mocked_request("GET", "/v2/", headers={"Host": "evil.example/x?", "X-Forwarded-Proto": "gopher"})
    assert origin(hostile, CONFIG) == "http://" + CONFIG.listen


def test_whose_login_a_token_request_is() -> None:
    assert _login("", {"grant_type": "password", "username": "alice", "password": "pw"}) == basic_digest("alice", "pw")
    assert _login("", {"grant_type": "refresh_token", "refresh_token": "r1"}) == credential_digest("Refresh r1")
    assert _login("Basic YWxpY2U6cHc=", {}) == credential_digest("Basic YWxpY2U6cHc=")
    assert _login("", {}) is None  # anonymous
