"""What the mirror may fetch and serve: ``[[policy]]`` rules decided before any upstream contact.

A pure function of the rules and the request's upstream, repository and tag (``None`` for a
request by digest, a blob or a tag list).  Routing is by repository, so a pull by digest is judged
by its repository like any other: content cannot be reached around a rule by naming its digest.
The check runs before the cache as well, so content cached before a rule denied it is no longer
served.  First matching rule wins; with no match the request is allowed, unless the rules allow
something (an allow list: then everything else is denied).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from proxy.config import PolicyRule


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: int | None = None
    """1-based position of the deciding rule (``None``: no rule matched)."""
    why: str = ""


def judge(rules: tuple[PolicyRule, ...], upstream: str, repository: str, tag: str | None) -> Verdict:
    for number, rule in enumerate(rules, 1):
        if not (fnmatchcase(upstream, rule.upstream) and fnmatchcase(repository, rule.repository)):
            continue
        if tag is None:
            if rule.tag != "*" and rule.action == "deny":
                continue  # a deny of some tags cannot judge content named by digest
        elif not fnmatchcase(tag, rule.tag):
            continue
        return Verdict(rule.action == "allow", number, f"[[policy]] rule {number} ({rule.describe()})")
    if any(rule.action == "allow" for rule in rules):
        return Verdict(False, None, "no [[policy]] rule allows it (the allow rules are a list of what may be fetched)")
    return Verdict(True)


def describe(rules: tuple[PolicyRule, ...]) -> list[str]:
    """The rules as ``config check`` shows them, with what happens to everything else."""
    lines = [f"policy rule {n}: {rule.describe()}" for n, rule in enumerate(rules, 1)]
    if rules:
        rest = "denied" if any(r.action == "allow" for r in rules) else "allowed"
        lines.append(f"policy: anything no rule matches is {rest}")
    return lines
