"""[[policy]] decisions: first match wins, digests judged by repository, allow lists close the rest."""

from __future__ import annotations

import pytest

from proxy.config import PolicyRule
from proxy.pull.policy import describe, judge

DENY_LIBRARY_LATEST = PolicyRule(action="deny", upstream="docker.io", repository="library/*", tag="latest")
DENY_EVIL = PolicyRule(action="deny", repository="evil/*")
ALLOW_TEAM_RELEASES = PolicyRule(action="allow", upstream="ghcr.io", repository="team/**", tag="v*")


@pytest.mark.parametrize(
    ("rules", "request_", "allowed", "rule"),
    [
        ((), ("docker.io", "library/alpine", "3.20"), True, None),
        ((DENY_LIBRARY_LATEST,), ("docker.io", "library/alpine", "latest"), False, 1),
        ((DENY_LIBRARY_LATEST,), ("docker.io", "library/alpine", "3.20"), True, None),
        ((DENY_LIBRARY_LATEST,), ("docker.io", "library/alpine", None), True, None),  # a digest: not a tag rule's
        ((DENY_LIBRARY_LATEST,), ("ghcr.io", "library/alpine", "latest"), True, None),
        ((DENY_EVIL,), ("docker.io", "evil/miner", None), False, 1),  # no way round by digest
        ((DENY_EVIL,), ("quay.io", "evil/a/b", "1"), False, 1),  # * crosses '/'
        ((ALLOW_TEAM_RELEASES,), ("ghcr.io", "team/app", "v1.2"), True, 1),
        ((ALLOW_TEAM_RELEASES,), ("ghcr.io", "team/app", "main"), False, None),  # an allow list closes the rest
        ((ALLOW_TEAM_RELEASES,), ("ghcr.io", "team/app", None), True, 1),  # its tags' content is pulled by digest
        ((ALLOW_TEAM_RELEASES,), ("docker.io", "library/alpine", "3.20"), False, None),
        ((DENY_EVIL, PolicyRule(action="allow")), ("docker.io", "evil/x", "1"), False, 1),  # first match wins
    ],
)
def test_judge(rules: tuple[PolicyRule, ...], request_: tuple[str, str, str | None], allowed: bool,
               rule: int | None) -> None:  # fmt: skip
    verdict = judge(rules, *request_)
    assert (verdict.allowed, verdict.rule) == (allowed, rule)
    if not allowed:
        assert verdict.why


def test_describe_says_what_happens_to_the_rest() -> None:
    assert describe(()) == []
    assert describe((DENY_EVIL,)) == ["policy rule 1: deny */evil/*:*", "policy: anything no rule matches is allowed"]
    assert describe((ALLOW_TEAM_RELEASES,))[-1] == "policy: anything no rule matches is denied"
