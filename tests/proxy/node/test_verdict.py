"""``node check``'s verdicts from the runtime's pull and the mirror's record of the nonce."""

from __future__ import annotations

from proxy.node.verdict import Pull, judge


def seen(target: str, status: int = 200) -> list[dict[str, object]]:
    return [{"kind": "manifest", "status": status, "target": target}, {"kind": "blob", "status": 200, "target": ""}]


def test_proven_only_when_the_mirror_answered_and_the_runtime_accepted() -> None:
    ok = judge("containerd", "docker.io", Pull(True), seen("linux/arm/v7 (node)"), [])
    assert ok.proven and ok.line == "containerd (docker.io): through the mirror as linux/arm/v7 (node)"
    chose = judge("podman", "docker.io", Pull(True), seen("index (unknown client)"), [])
    assert chose.proven and "chose itself" in chose.line
    refused = judge("docker", "docker.io", Pull(False, "pulling...\nerror: manifest unknown\n"),
                    seen("linux/arm64/v8 (registration)"), [])  # fmt: skip
    assert not refused.proven
    assert refused.line.endswith("but docker refused the manifest: error: manifest unknown")


def test_never_contacted_names_the_hint() -> None:
    direct = judge("containerd", "docker.io", Pull(False, "dial tcp: lookup registry-1.docker.io: no such host"), [],
                   ["containerd reads /etc/containerd/certs.d; setup wrote /etc/docker/certs.d"])  # fmt: skip
    assert not direct.proven
    assert direct.line == ("containerd (docker.io): never contacted the mirror; it went to docker.io directly "
                           "(containerd reads /etc/containerd/certs.d; setup wrote /etc/docker/certs.d): "
                           "dial tcp: lookup registry-1.docker.io: no such host")  # fmt: skip
    elsewhere = judge("podman", "docker.io", Pull(True), [], ["the drop-in is shadowed by 90-other.conf"])
    assert not elsewhere.proven and "without asking the mirror" in elsewhere.line and "shadowed" in elsewhere.line
    turned_away = judge("docker", "docker.io", Pull(False, "denied"), seen("", 404), [])
    assert not turned_away.proven and "refused the canary (404)" in turned_away.line
