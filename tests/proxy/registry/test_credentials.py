"""Challenges as registries write them, and a client's credential that never shows itself."""

from __future__ import annotations

import pytest

from proxy.registry.credentials import Challenge, ClientCredential, TokenCache, basic_digest, credential_digest


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull"',
         "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                    "scope": "repository:library/x:pull"}),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        ("Bearer realm=https://ghcr.io/token,service=ghcr.io", "bearer",
         {"realm": "https://ghcr.io/token", "service": "ghcr.io"}),
        ('Bearer realm="r",error="insufficient_scope",scope="repository:a:pull,push"', "bearer",
         {"realm": "r", "error": "insufficient_scope", "scope": "repository:a:pull,push"}),
    ],
)  # fmt: skip
def test_challenges_parse_as_registries_write_them(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = Challenge.parse(header)
    assert challenge is not None
    assert (challenge.scheme, challenge.params) == (scheme, params)


def test_a_written_challenge_reads_back_and_cannot_be_broken_out_of() -> None:
    written = Challenge("bearer", {"realm": 'http://h/auth"x', "service": "s", "scope": ""}).header()
    assert written == 'Bearer realm="http://h/authx",service="s"'
    assert Challenge.parse(written) == Challenge("bearer", {"realm": "http://h/authx", "service": "s"})
    assert Challenge.parse("") is None and Challenge.parse("=x") is None


def test_a_credential_never_shows_itself() -> None:
    credential = ClientCredential("Basic YWxpY2U6c2VjcmV0")
    assert "YWxp" not in repr(credential) and "secret" not in repr(credential)
    assert credential.user == "alice" and credential.is_basic
    assert credential.identity == credential.digest == credential_digest("Basic YWxpY2U6c2VjcmV0")
    assert basic_digest("alice", "secret") == credential.digest  # the OAuth form of the same login
    assert not ClientCredential("Bearer abc").is_basic and ClientCredential("Bearer abc").user == ""


def test_tokens_are_kept_per_credential_and_scope() -> None:
    cache = TokenCache()
    cache.put("alice", "repository:a:pull", "t1", 300)
    assert cache.get("alice", "repository:a:pull") == "t1"
    assert cache.get("bob", "repository:a:pull") is None
    assert cache.get("alice", "repository:b:pull") is None
    cache.put("bob", "s", "t2", 0)  # a token that claims no lifetime is still used for 5 s
    assert cache.get("bob", "s") == "t2"
