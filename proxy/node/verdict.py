"""``node check``'s verdicts, pure: from what the runtime did with the canary and what the mirror
saw for its nonce, one line per runtime and registry that says whether pulls go through the
mirror (and as which platform), or exactly why not.

The mirror's own record is the proof: a runtime that pulled the canary without the mirror
seeing its manifest request did not pull through the mirror, whatever its configuration says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pull:
    """What the runtime's own pull of the canary did."""

    ok: bool
    error: str = ""
    """The runtime's error (its last line is what is shown)."""


@dataclass(frozen=True)
class Verdict:
    runtime: str
    registry: str
    proven: bool
    line: str


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no error message"


def judge(runtime: str, registry: str, pull: Pull, sightings: list[dict[str, Any]], hints: list[str]) -> Verdict:
    """``sightings``: the mirror's record for the nonce; ``hints``: what the node's configuration
    says about why the mirror might not have been asked (another directory, a shadowing file)."""
    where = f"{runtime} ({registry})"
    manifests = [s for s in sightings if s.get("kind") == "manifest"]
    answered = [s for s in manifests if s.get("status") == 200]
    target = next((str(s["target"]) for s in answered if s.get("target")), "")
    why = f" ({'; '.join(hints)})" if hints else ""
    if answered and pull.ok:
        if target.endswith("(unknown client)"):
            return Verdict(runtime, registry, True, f"{where}: through the mirror, which does not know this "
                           "node's platform: it got the index and chose itself (node setup declares it)")  # fmt: skip
        return Verdict(runtime, registry, True, f"{where}: through the mirror as {target or 'index'}")
    if answered:
        return Verdict(runtime, registry, False, f"{where}: the mirror answered (as {target or 'index'}) but "
                       f"{runtime} refused the manifest: {last_line(pull.error)}")  # fmt: skip
    if manifests:
        status = manifests[-1].get("status")
        return Verdict(runtime, registry, False, f"{where}: the mirror refused the canary ({status}): "
                       f"{last_line(pull.error)}")  # fmt: skip
    if pull.ok:
        return Verdict(runtime, registry, False, f"{where}: pulled without asking the mirror (from {registry} "
                       f"directly or another mirror){why}")  # fmt: skip
    return Verdict(runtime, registry, False, f"{where}: never contacted the mirror; it went to {registry} "
                   f"directly{why}: {last_line(pull.error)}")  # fmt: skip
