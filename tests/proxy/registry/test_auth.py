"""Where an upstream's credentials go, decided without HTTP: the token realm is a recording
function standing in for the one request ``Authorizer.answer`` makes (the e2e suites run the
same decisions against real registries)."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.registry.auth import Authorizer
from proxy.registry.credentials import CLIENT_CREDENTIAL, ClientCredential

ALICE = "Basic YWxpY2U6c2VjcmV0"  # alice:secret


class Realm:
    """Answers token requests with a numbered token (or ``body``) and records what it was sent."""

    def __init__(self, body: Any = None) -> None:
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.body = body

    async def __call__(self, url: str, headers: dict[str, str]) -> Any:
        self.asked.append((url, headers))
        return self.body if self.body is not None else {"token": f"t{len(self.asked)}", "expires_in": 300}


def answer(auth: Authorizer, challenge: str, scope: str, realm: Realm) -> bool:
    return asyncio.run(auth.answer(challenge, scope, realm))


def test_a_realm_on_the_upstreams_domain_gets_the_credentials_and_the_token_is_kept_per_scope() -> None:
    auth, realm = Authorizer("registry.example.com", "alice", "secret", passthrough=False), Realm()
    assert auth.header("repository:a:pull") is None  # nothing sent before the upstream asks
    bearer = 'Bearer realm="https://auth.example.com/token",service="reg"'
    assert answer(auth, bearer, "repository:a:pull", realm)
    assert realm.asked == [("https://auth.example.com/token?service=reg&scope=repository%3Aa%3Apull",
                            {"Authorization": ALICE})]  # fmt: skip
    assert auth.header("repository:a:pull") == "Bearer t1"
    assert auth.header("repository:b:pull") is None


def test_a_foreign_realm_is_asked_anonymously() -> None:
    auth, realm = Authorizer("registry.example.com", "alice", "secret", passthrough=False), Realm()
    assert answer(auth, 'Bearer realm="https://evil.example.net/token",service="reg"', "", realm)
    assert realm.asked == [("https://evil.example.net/token?service=reg", {})]


def test_basic_is_answered_once_and_only_with_credentials() -> None:
    anonymous = Authorizer("registry.example.com", "", "", passthrough=False)
    assert not answer(anonymous, 'Basic realm="r"', "", Realm())
    auth = Authorizer("registry.example.com", "alice", "secret", passthrough=False)
    assert answer(auth, 'Basic realm="r"', "", Realm())
    assert auth.header("anything") == ALICE
    assert not answer(auth, 'Basic realm="r"', "", Realm())  # refused again: no loop of retries


def test_unusable_challenges_and_token_answers_are_no() -> None:
    auth = Authorizer("registry.example.com", "", "", passthrough=False)
    for challenge in ("", "Negotiate abc", 'Bearer realm="file:///etc/passwd",service="s"'):
        realm = Realm()
        assert not answer(auth, challenge, "", realm) and realm.asked == []
    for body in ([], {"token": ""}, {"token": 5}, "text"):
        assert not answer(auth, 'Bearer realm="https://registry.example.com/t"', "", Realm(body))
    assert auth.header("") is None


def test_each_passthrough_client_has_its_own_tokens_and_a_clients_token_is_never_renewed_for_it() -> None:
    auth = Authorizer("registry.example.com", "", "", passthrough=True)
    bearer = 'Bearer realm="https://registry.example.com/token",service="reg"'

    async def as_client(header: str | None, realm: Realm) -> tuple[bool, str | None]:
        CLIENT_CREDENTIAL.set(ClientCredential(header) if header else None)
        return await auth.answer(bearer, "repository:p:pull", realm), auth.header("repository:p:pull")

    alice = Realm()
    assert asyncio.run(as_client(ALICE, alice)) == (True, "Bearer t1")
    assert alice.asked[0][1] == {"Authorization": ALICE}
    bob = Realm({"token": "bobs"})
    assert asyncio.run(as_client("Basic Ym9iOnB3", bob)) == (True, "Bearer bobs")
    anonymous = Realm({"token": "anon"})
    assert asyncio.run(as_client(None, anonymous)) == (True, "Bearer anon") and anonymous.asked[0][1] == {}

    async def header_as(header: str) -> str | None:
        CLIENT_CREDENTIAL.set(ClientCredential(header))
        return auth.header("repository:p:pull")

    assert asyncio.run(header_as(ALICE)) == "Bearer t1"  # alice's, untouched by bob's and anonymous
    assert asyncio.run(header_as("Basic Ym9iOnB3")) == "Bearer bobs"
    own = Realm()
    assert asyncio.run(as_client("Bearer mine", own)) == (False, "Bearer mine") and own.asked == []
