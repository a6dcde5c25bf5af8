"""What if a platform the fleet does not run yet pulled every image it did: each image's cached
index resolved for that platform with the mirror's own resolver and capability rules (a remote
node: no 32-bit fallback assumed), so the answer is what such a node would really get."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hostinfo import HostProfile
from proxy.fleet.outcomes import MISSING, classify
from proxy.fleet.report import Cell
from proxy.oci.digests import matches
from proxy.oci.mediatypes import ClientCaps
from proxy.oci.resolve import Decision, InvalidIndex, resolution

DECIDING_CLIENT = ClientCaps(zstd=False)
"""What the mirror resolves a tag's record for (a client that reads every manifest type)."""


async def decide(index: bytes, profile: HostProfile, load: Callable[[str], Awaitable[bytes | None]]) -> Decision:
    """The resolver's decision, reading what it needs (nested indexes, configs) with ``load``."""
    steps = resolution(index, profile, DECIDING_CLIENT)
    try:
        digest, _ = next(steps)
        while True:
            digest, _ = steps.send(await load(digest))
    except StopIteration as done:
        decision: Decision = done.value
        return decision


Load = Callable[[str], Awaitable[bytes | None]]


async def evaluate(target: str, profile: HostProfile, indexes: dict[str, str],
                   load_for: Callable[[str], Load]) -> dict[str, Cell]:  # fmt: skip
    """``indexes``: image -> index digest; ``load_for(image)``: what reads a digest's bytes for
    that image (``None``: not there; checked against the digest here): the cache, or with
    ``--refresh`` the upstream.  An image whose index cannot be read is ``unknown``, saying so."""
    cells: dict[str, Cell] = {}
    for image, digest in indexes.items():
        load = load_for(image)
        index = await load(digest)
        if index is None or not matches(digest, index):
            cells[image] = Cell("unknown", reason=f"the index {digest} is not in the cache (--refresh asks the "
                                "upstream)", what_if=True)  # fmt: skip
            continue
        try:
            decision = await decide(index, profile, load)
        except InvalidIndex as exc:
            cells[image] = Cell("unknown", reason=f"the cached index is invalid: {exc}", what_if=True)
            continue
        chosen = decision.chosen
        if chosen is None:
            reasons = "; ".join(f"{r.platform}: {r.reason}" for r in decision.rejected[:6])
            cells[image] = Cell(MISSING, reason=f"nothing runs on {target}: {reasons}", what_if=True)
            continue
        outcome = classify(target, str(chosen.platform), chosen.label)
        cells[image] = Cell(outcome.kind, outcome.detail, chosen=chosen.digest, chosen_platform=str(chosen.platform),
                            reason=f"rank {chosen.rank} ({chosen.label}) of {len(decision.candidates)}",
                            what_if=True)  # fmt: skip
    return cells
