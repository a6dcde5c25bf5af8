"""The access policy of ``auth = "passthrough"``, as pure functions: the cache is never an oracle."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError
from proxy.pull.access import Access, CredentialsNeeded, Known, Step, after_check, decide
from proxy.pull.members import Members
from proxy.pull.route import Route
from proxy.registry.credentials import CLIENT_CREDENTIAL, ClientCredential
from proxy.storage.tagindex import TagIndex


def known(**changes: bool) -> Known:
    fields = dict(member=False, public=False, private=False, granted=False, seen_public=False, credential=False)
    return Known(**(fields | changes))


def test_remembered_answers_serve_without_asking() -> None:
    assert decide(known(member=True, public=True)) is Step.SERVE_PUBLIC
    assert decide(known(member=True, granted=True, credential=True, private=True)) is Step.SERVE_PRIVATE


def test_an_object_not_known_in_the_repository_is_always_asked_for() -> None:
    """A digest cached for another repository proves nothing about this one."""
    assert decide(known(public=True)) is Step.ASK_ANONYMOUS
    assert decide(known(granted=True, credential=True, private=True)) is Step.ASK_AS_CLIENT


def test_a_private_repository_asks_with_the_clients_credential_or_challenges() -> None:
    assert decide(known(member=True, private=True, credential=True)) is Step.ASK_AS_CLIENT
    assert decide(known(member=True, private=True)) is Step.CHALLENGE


@pytest.mark.parametrize(
    ("asked", "status", "k", "expected"),
    [
        (Step.ASK_ANONYMOUS, 200, known(), Step.SERVE_PUBLIC),
        (Step.ASK_AS_CLIENT, 200, known(credential=True), Step.SERVE_PRIVATE),
        (Step.ASK_ANONYMOUS, 401, known(credential=True), Step.ASK_AS_CLIENT),
        (Step.ASK_ANONYMOUS, 401, known(), Step.CHALLENGE),
        (Step.ASK_AS_CLIENT, 401, known(credential=True), Step.REFUSED),
        (Step.ASK_AS_CLIENT, 403, known(credential=True), Step.REFUSED),
        (Step.ASK_AS_CLIENT, 404, known(credential=True), Step.NOT_FOUND),
        (Step.ASK_AS_CLIENT, None, known(credential=True, member=True), Step.UNAVAILABLE),
        (Step.ASK_ANONYMOUS, 503, known(member=True, seen_public=True), Step.SERVE_PUBLIC),
        (Step.ASK_ANONYMOUS, 429, known(member=False, seen_public=True), Step.UNAVAILABLE),
    ],
)
def test_after_the_upstream_answered(asked: Step, status: int | None, k: Known, expected: Step) -> None:
    assert after_check(asked, status, k) is expected


def test_nothing_private_is_ever_served_without_a_yes_for_this_client() -> None:
    """Over every combination of what is known and every answer: private content (not public,
    not seen public) is served only after a remembered or fresh yes for this very credential."""
    for values in itertools.product([False, True], repeat=6):
        k = Known(*values)
        step = decide(k)
        if step is Step.SERVE_PRIVATE:
            assert k.granted and k.member
        if step is Step.SERVE_PUBLIC:
            assert k.public and k.member
        for status in (None, 200, 401, 403, 404, 500):
            for asked in (Step.ASK_ANONYMOUS, Step.ASK_AS_CLIENT):
                after = after_check(asked, status, k)
                if after is Step.SERVE_PRIVATE:
                    assert asked is Step.ASK_AS_CLIENT and status == 200
                if after is Step.SERVE_PUBLIC and status != 200:
                    assert k.seen_public and k.member


class _Answers:
    """The upstream's answers to checks, by (credential digest or "", repository, reference):
    a stand-in for ``Upstream.probe`` that records every question."""

    name = "up"
    reachable = True

    def __init__(self, yes: set[tuple[str, str, str]]) -> None:
        self.yes = yes
        self.asked: list[tuple[str, str, str]] = []

    async def probe(self, repo: str, kind: str, reference: str = "") -> None:
        credential = CLIENT_CREDENTIAL.get()
        key = (credential.identity if credential else "", repo, reference)
        self.asked.append(key)
        if key not in self.yes:
            raise UpstreamError(self.name, 401, "no")


def _route(repo: str) -> Route:
    return Route(UpstreamConfig(name="up", url="https://up.example", auth="passthrough"), repo)


async def test_a_no_is_never_remembered_and_a_digest_of_another_repository_is_asked_for(tmp_path: Path) -> None:
    alice = ClientCredential("Bearer alice-token")
    digest = "sha256:" + "a" * 64
    answers = _Answers({(alice.digest, "team-a/app", digest)})
    access = Access({"up": answers}, Members(TagIndex(tmp_path / "index.db"), {}))  # type: ignore[dict-item]
    assert (await access.admit(_route("team-a/app"), "blob", digest, alice)).outcome == "private, checked"
    assert (await access.admit(_route("team-a/app"), "blob", digest, alice)).outcome == "private, remembered"
    asked = len(answers.asked)
    for _ in range(2):  # the same digest under team-b: asked each time, refused each time
        with pytest.raises(CredentialsNeeded):
            await access.admit(_route("team-b/app"), "blob", digest, alice)
    assert len(answers.asked) > asked + 1
    sha512 = "sha512:" + "b" * 128  # a digest, not a tag: no implicit membership
    with pytest.raises(CredentialsNeeded):
        await access.admit(_route("team-a/app"), "manifest", sha512, alice)
    assert answers.asked[-1] == (alice.digest, "team-a/app", sha512)
