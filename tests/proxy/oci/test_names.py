"""Names, tags, digests and image references: what is a valid one, and why not (pure)."""

from __future__ import annotations

import pytest

from proxy.errors import PlatproxyError
from proxy.http.errors import answer_for
from proxy.oci.names import ImageRef, check_digest, check_name, check_tag

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize("name", ["library/alpine", "a", "ghcr.io/o/r", "a-b/c__d/e.f", "x" * 255])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a//b", "a/../b", "..", "a/", "/a", "a_", "x" * 256, "a b", "a\x00"])
def test_bad_names(name: str) -> None:
    with pytest.raises(PlatproxyError) as info:
        check_name(name)
    assert answer_for(info.value).code == "NAME_INVALID"


@pytest.mark.parametrize(
    ("digest", "ok"),
    [(SHA, True), ("sha512:" + "b" * 128, True), ("sha256:" + "A" * 64, False), ("sha256:abc", False),
     ("md5:" + "a" * 32, False), ("sha256:../x", False), ("", False)],
)  # fmt: skip
def test_digests(digest: str, ok: bool) -> None:
    if ok:
        assert check_digest(digest) == digest
    else:
        with pytest.raises(PlatproxyError):
            check_digest(digest)


def test_tags() -> None:
    assert check_tag("3.20") == "3.20" and check_tag("_x") == "_x"
    for bad in ("", ".x", "-x", "t" * 129, "a/b"):
        with pytest.raises(PlatproxyError):
            check_tag(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", ("docker.io", "library/alpine", "latest")),
        ("alpine:3.20", ("docker.io", "library/alpine", "3.20")),
        ("ghcr.io/o/r:tag", ("ghcr.io", "o/r", "tag")),
        ("localhost:5000/x/y", ("localhost:5000", "x/y", "latest")),
        ("user/repo@" + SHA, ("docker.io", "user/repo", SHA)),
    ],
)
def test_image_references(text: str, expected: tuple[str, str, str]) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.name, ref.reference) == expected
