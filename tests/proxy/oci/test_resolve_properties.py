"""Property tests of the resolver over generated indexes of real image bytes."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from hostinfo import HostProfile, Platform, Rank, compare
from hostinfo.compat import Capabilities
from proxy.oci.mediatypes import ClientCaps
from proxy.oci.resolve import resolve_loading
from tests.ocibuild import Image, attestation, image, index

POOL = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "amd64", "os": "linux", "variant": "v2"},
    {"architecture": "amd64", "os": "linux", "variant": "v3"},
    {"architecture": "amd64", "os": "linux", "variant": "v4"},
    {"architecture": "386", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "arm", "os": "linux", "variant": "v5"},
    {"architecture": "arm", "os": "linux", "variant": "v6"},
    {"architecture": "arm", "os": "linux", "variant": "v7"},
    {"architecture": "arm", "os": "linux", "variant": "v8"},
    {"architecture": "ppc64le", "os": "linux"},
    {"architecture": "s390x", "os": "linux"},
    {"architecture": "riscv64", "os": "linux"},
    {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.1"},
]
HOSTS = ["linux/amd64/v1", "linux/amd64/v2", "linux/amd64/v3", "linux/amd64/v4", "linux/arm64", "linux/arm/v5",
         "linux/arm/v6", "linux/arm/v7", "linux/arm/v8", "linux/386", "linux/ppc64le", "linux/s390x"]  # fmt: skip


@cache
def built(i: int) -> Image:
    return image(POOL[i], label=str(i))


@cache
def attested(i: int) -> Image:
    return attestation(built(i))


hosts = st.builds(
    lambda spec, ia32, aarch32: HostProfile(
        platform=Platform.parse(spec), capabilities=Capabilities(ia32=ia32, aarch32=aarch32)
    ),
    st.sampled_from(HOSTS),
    st.booleans(),
    st.booleans(),
)
subsets = st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=len(POOL), unique=True)


def choose(entries: list[Image], h: HostProfile) -> str | None:
    decision = resolve_loading(index(entries).data, h, ClientCaps(), {}.get)
    return decision.chosen.digest if decision.chosen else None


@settings(max_examples=200, deadline=None)
@given(hosts, subsets, st.booleans())
def test_chosen_entry_is_runnable_and_never_an_attestation(h: HostProfile, picks: list[int], attest: bool) -> None:
    entries = [built(i) for i in picks] + ([attested(i) for i in picks] if attest else [])
    chosen = choose(entries, h)
    if chosen is None:
        assert all(not isinstance(compare(h, Platform.from_descriptor(POOL[i])), Rank) for i in picks)
        return
    (i,) = [i for i in picks if built(i).manifest.digest == chosen]
    assert isinstance(compare(h, Platform.from_descriptor(POOL[i])), Rank)
    assert chosen not in {attested(i).manifest.digest for i in picks}


@settings(max_examples=200, deadline=None)
@given(hosts, subsets, st.randoms(use_true_random=False))
def test_reordering_entries_of_different_rank_keeps_the_choice(h: HostProfile, picks: list[int], rnd) -> None:  # type: ignore[no-untyped-def]
    entries = [built(i) for i in picks]
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert choose(entries, h) == choose(shuffled, h)


@settings(max_examples=200, deadline=None)
@given(hosts, subsets)
def test_an_exact_match_beats_every_fallback(h: HostProfile, picks: list[int]) -> None:
    exact = [i for i in picks if Platform.parse(str(Platform.from_descriptor(POOL[i]))) == h.platform]
    decision = resolve_loading(index([built(i) for i in picks]).data, h, ClientCaps(), {}.get)
    if exact:
        assert decision.chosen is not None and decision.chosen.rank == 0
        assert decision.chosen.digest == built(exact[0]).manifest.digest
