"""The resolver as a pure function over real index bytes: every case of the test matrix."""

from __future__ import annotations

import pytest

from hostinfo import HostProfile, Platform
from hostinfo.compat import Capabilities
from proxy.oci.mediatypes import OCI_INDEX, ClientCaps
from proxy.oci.resolve import Decision, InvalidIndex, NeedContent, resolve, resolve_loading
from tests import indexes
from tests.indexes import Case
from tests.ocibuild import Blob, image, index


def host(spec: str, *, aarch32: bool = False, ia32: bool = False, features: tuple[str, ...] = ()) -> HostProfile:
    return HostProfile(platform=Platform.parse(spec, features), capabilities=Capabilities(aarch32=aarch32, ia32=ia32))


def decide(case: Case, h: HostProfile, client: ClientCaps | None = None) -> Decision:
    contents = case.contents()
    return resolve_loading(case.top.data, h, client or ClientCaps(), contents.get)


@pytest.mark.parametrize(
    ("spec", "expected", "label"),
    [
        ("linux/amd64/v3", "linux/amd64", "baseline"),
        ("linux/amd64/v1", "linux/amd64", "native"),
        ("linux/arm/v6", "linux/arm/v6", "native"),
        ("linux/arm/v7", "linux/arm/v7", "native"),
        ("linux/arm/v8", "linux/arm/v7", "lower level"),
        ("linux/arm64", "linux/arm64/v8", "native"),
        ("linux/386", "linux/386", "native"),
        ("linux/ppc64le", "linux/ppc64le", "native"),
        ("linux/riscv64", "linux/riscv64", "native"),
        ("linux/s390x", "linux/s390x", "native"),
    ],
)
def test_docker_official_image_with_attestations(spec: str, expected: str, label: str) -> None:
    case = indexes.alpine_with_attestations()
    decision = decide(case, host(spec))
    assert decision.chosen is not None
    assert decision.chosen.digest == case.digest_of(expected)
    assert decision.chosen.label == label
    attestations = [r for r in decision.rejected if "attestation" in r.reason]
    assert len(attestations) == 8


def test_arm_v5_host_gets_nothing_from_alpine_and_is_told_why() -> None:
    decision = decide(indexes.alpine_with_attestations(), host("linux/arm/v5"))
    assert decision.chosen is None
    reasons = {r.platform: r.reason for r in decision.rejected}
    assert "v6" in reasons["linux/arm/v6"] and "beyond" in reasons["linux/arm/v6"]
    assert decision.no_match_detail()["runs"] == ["linux/arm/v5 (native)"]
    assert len(decision.no_match_detail()["entries"]) == 16


def test_arm64_falls_back_to_arm_only_with_aarch32() -> None:
    only32 = Case(*_single([{"architecture": "arm", "os": "linux", "variant": "v7"}]))
    assert decide(only32, host("linux/arm64")).chosen is None
    chosen = decide(only32, host("linux/arm64", aarch32=True)).chosen
    assert chosen is not None and chosen.label.startswith("32-bit compat")


def test_386_on_amd64_only_with_ia32_and_ranked_last() -> None:
    case = indexes.alpine_with_attestations()
    decision = decide(case, host("linux/amd64/v2", ia32=True))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of("linux/amd64")
    assert [c.platform.architecture for c in decision.candidates] == ["amd64", "386"]
    only386 = Case(*_single([{"architecture": "386", "os": "linux"}]))
    assert decide(only386, host("linux/amd64/v2")).chosen is None
    assert decide(only386, host("linux/amd64/v2", ia32=True)).chosen is not None


def test_nested_per_platform_index_is_followed() -> None:
    case = indexes.goauthentik_nested()
    first = resolve(case.top.data, host("linux/arm64"), ClientCaps(), {})
    assert isinstance(first, NeedContent) and len(first.digests) == 1  # only the arm64 branch
    decision = decide(case, host("linux/arm64"))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of("arm64")
    assert decision.chosen.path == first.digests
    assert any("attestation" in r.reason for r in decision.rejected)


def test_nested_branch_without_fit_backtracks() -> None:
    amd64 = {"architecture": "amd64", "os": "linux"}
    win = image({"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.1"})
    lin = image(amd64, label="linux")
    branch_a, branch_b = index([win]), index([lin])
    top = index([(branch_a, None, {}), (branch_b, None, {})])
    case = Case(top, [branch_a, branch_b, win.manifest, lin.manifest], {"linux": lin})
    decision = decide(case, host("linux/amd64/v2"))
    assert decision.chosen is not None and decision.chosen.digest == lin.manifest.digest
    assert any("windows" in r.reason for r in decision.rejected)


def test_nesting_deeper_than_four_is_not_followed() -> None:
    leaf = image({"architecture": "amd64", "os": "linux"})
    blobs: list[Blob] = [leaf.manifest]
    inner: Blob = index([leaf])
    for _ in range(4):
        blobs.append(inner)
        inner = index([(inner, None, {})])
    decision = decide(Case(inner, blobs), host("linux/amd64/v1"))
    assert decision.chosen is None
    assert any("deeper than 4" in r.reason for r in decision.rejected)
    shallow = index([(blobs[2], None, {})])  # three levels in all
    assert decide(Case(shallow, blobs), host("linux/amd64/v1")).chosen is not None


@pytest.mark.parametrize(
    ("host_version", "expected"),
    [("10.0.20348.2700", "ltsc2022"), ("10.0.17763.5820", "ltsc2019"), ("10.0.26100.1", "ltsc2022")],
)
def test_windows_ltsc_pair(host_version: str, expected: str) -> None:
    case = indexes.windows_ltsc()
    decision = decide(case, host(f"windows({host_version})/amd64"))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of(expected)


def test_windows_image_on_linux_host_gets_the_linux_entry() -> None:
    case = indexes.windows_ltsc()
    decision = decide(case, host("linux/amd64/v3"))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of("linux/amd64")
    assert sum("built for windows" in r.reason for r in decision.rejected) == 2


def test_entries_without_platform_are_judged_by_their_config() -> None:
    case = indexes.no_platform()
    first = resolve(case.top.data, host("linux/amd64/v2"), ClientCaps(), {})
    assert isinstance(first, NeedContent) and len(first.digests) == 2  # both manifests first
    decision = decide(case, host("linux/amd64/v2"))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of("amd64")
    assert "from its config" in decision.rejected[0].platform


def test_unreadable_config_is_rejected_not_guessed() -> None:
    case = indexes.no_platform()
    contents = {d: v for d, v in case.contents().items() if d not in {i.config.digest for i in case.images.values()}}
    decision = resolve_loading(case.top.data, host("linux/amd64/v2"), ClientCaps(), contents.get)
    assert decision.chosen is None
    assert all("config blob (to check) is not available" in r.reason for r in decision.rejected)


def test_content_that_does_not_match_its_digest_decides_nothing() -> None:
    case = indexes.no_platform()
    contents = {d: (v[:-1] + b" " if v else v) for d, v in case.contents().items()}
    decision = resolve_loading(case.top.data, host("linux/amd64/v2"), ClientCaps(), contents.get)
    assert decision.chosen is None


def test_armv8_style_variant_is_read_and_warned_about() -> None:
    case = indexes.armv8_style()
    decision = decide(case, host("linux/arm64"))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of("arm64")
    assert any("armvN style" in w for w in decision.warnings)


def test_arm64_v8_and_unlabeled_are_the_same_platform() -> None:
    case = indexes.arm64_v8_and_unlabeled()
    decision = decide(case, host("linux/arm64/v8"))
    assert [c.rank for c in decision.candidates] == [0, 0]
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of("v8")  # more specific


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("linux/amd64/v4", "v3"), ("linux/amd64/v3", "v3"), ("linux/amd64/v2", "v2"), ("linux/amd64/v1", "unlabeled")],
)
def test_amd64_levels_plus_unlabeled(spec: str, expected: str) -> None:
    case = indexes.amd64_levels()
    decision = decide(case, host(spec))
    assert decision.chosen is not None and decision.chosen.digest == case.digest_of(expected)
    assert any("has no variant and counts as v1" in w for w in decision.warnings)


def test_zstd_twin() -> None:
    case = indexes.zstd_twin()
    old = decide(case, host("linux/amd64/v2"), ClientCaps(zstd=False)).chosen
    new = decide(case, host("linux/amd64/v2"), ClientCaps(zstd=True)).chosen
    assert old is not None and old.digest == case.digest_of("gzip")
    assert new is not None and new.digest == case.digest_of("zstd")


def test_nothing_fits_lists_every_entry() -> None:
    decision = decide(indexes.nothing_fits(), host("linux/arm64"))
    assert decision.chosen is None and decision.candidates == []
    assert {r.platform for r in decision.rejected} == {"linux/s390x", "linux/ppc64le"}
    assert all("not runnable on linux/arm64/v8" in r.reason for r in decision.rejected)


def test_features_must_be_a_subset_of_the_host() -> None:
    plain = {"architecture": "amd64", "os": "linux"}
    avx512 = {**plain, "features": ["avx512f"]}
    case = Case(*_single([avx512, plain]))
    with_flags = decide(case, host("linux/amd64/v4", features=("avx512f",)))
    without = decide(case, host("linux/amd64/v4"))
    assert with_flags.chosen is not None and with_flags.chosen.platform.features == ("avx512f",)
    assert without.chosen is not None and without.chosen.platform.features == ()


def test_unknown_media_types_and_artifacts_are_ignored_with_a_reason() -> None:
    good = image({"architecture": "amd64", "os": "linux"})
    odd = Blob(b"{}", "application/vnd.example.thing+json")
    sbom = image({"architecture": "amd64", "os": "linux"}, label="sbom")
    entries = [(odd, {"architecture": "amd64", "os": "linux"}, {}), good]
    top_doc = index(entries)
    case = Case(top_doc, [good.manifest], {})
    decision = decide(case, host("linux/amd64/v1"))
    assert decision.chosen is not None and decision.chosen.digest == good.manifest.digest
    assert "not an image manifest or index" in decision.rejected[0].reason
    import json

    doc = json.loads(top_doc.data)
    doc["manifests"].append({**sbom.manifest.descriptor(), "artifactType": "application/spdx+json"})
    top2 = Blob(json.dumps(doc).encode(), OCI_INDEX)
    decision2 = resolve_loading(top2.data, host("linux/amd64/v1"), ClientCaps(), {}.get)
    assert any("artifact" in r.reason for r in decision2.rejected)


@pytest.mark.parametrize(
    ("platform", "needle"),
    [
        ({"architecture": "arm64", "os": "linux", "variant": "v7"}, "not a real platform"),
        ({"architecture": "amd64", "os": "linux", "variant": "v8"}, "not a real platform"),
        ({"architecture": "arm", "os": "linux", "variant": "armv7"}, "armvN style"),
        ({"architecture": "mystery", "os": "linux"}, "unknown architecture"),
        ({"architecture": "x86_64", "os": "linux"}, "alias"),
        ({"architecture": "amd64", "os": "plan10"}, "unknown os"),
    ],
)
def test_validation_warnings(platform: dict[str, str], needle: str) -> None:
    case = Case(*_single([platform]))
    decision = decide(case, host("linux/amd64/v1"))
    assert any(needle in w for w in decision.warnings), decision.warnings


@pytest.mark.parametrize(
    "data", [b"not json", b"[]", b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}', b"{}"]
)
def test_not_an_index_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidIndex):
        resolve(data, host("linux/amd64/v1"), ClientCaps(), {})


def _single(platforms: list[dict[str, object]]) -> tuple[Blob, list[Blob], dict[str, object]]:
    images = [image(p, label=str(i)) for i, p in enumerate(platforms)]
    return index(images), [b for i in images for b in (i.manifest, *i.blobs())], {}
