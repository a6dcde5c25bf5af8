"""Bundles for air-gapped sites, with real tools: a fleet pulls an image of eight platforms (with
attestations) as linux/amd64 and linux/arm/v7 through a mirror; ``bundle export --platforms
observed`` holds exactly those two children, their attestations and the index's original bytes,
and skopeo reads it as an OCI layout; ``bundle import`` into an empty cache, with the upstream
stopped, lets skopeo, podman and ctr pull both platforms with the digests of the online pull,
and an arm64 pull gets a 404 naming the entry the bundle left out.  A flipped byte refuses the
bundle with the cache untouched; a delta bundle holds only the new blobs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.clients import containerd, ctr, image_digest, podman, storage
from tests.conftest import Seeded
from tests.indexes import fresh_case
from tests.registry import Platproxy, cli, config_args, free_port, push_case, request
from tests.rgw import Rgw, bucket, s3_text

pytestmark = pytest.mark.e2e
__all__ = ["containerd", "storage"]  # fixtures
Start = Callable[..., Platproxy]
IMAGE = "docker.io/library/multi:1"


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=300, check=False)


def pulled_digest(proxy: Platproxy, name: str) -> str:
    done = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{proxy.address}/{name}")
    assert done.returncode == 0, done.stderr
    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def pull_whole(proxy: Platproxy, name: str, into: Path) -> None:
    """Everything of one platform's image through the mirror (a node's pull: the blobs too)."""
    done = skopeo("copy", "--src-tls-verify=false", f"docker://{proxy.address}/{name}", f"dir:{into}")
    assert done.returncode == 0, done.stderr


def tar_blobs(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_bundle_of_the_platforms_that_ran_serves_them_offline_and_nothing_else(
    seeded: Seeded, platproxy: Start, containerd: Path, storage: Path, tmp_path: Path
) -> None:
    case = seeded.cases["library/multi:1"]
    online = f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n'
    fleet = platproxy("", "linux/amd64", config_args(tmp_path, online))
    for spec in ("linux/amd64", "linux/arm/v7"):  # the site's two platforms pull everything through the mirror
        selector = "platform." + spec.replace("/", ".")
        done = skopeo("copy", "--src-tls-verify=false", f"docker://{fleet.address}/{selector}/library/multi:1",
                      f"oci:{tmp_path / 'pulled'}:{spec.replace('/', '-')}")  # fmt: skip
        assert done.returncode == 0, done.stderr
    fleet.stop()  # its fleet records are written
    bundle = tmp_path / "site.tar"
    # --fetch: the attestations (no client pulls them) come from the upstream, kept in the cache on the way
    exported = cli("bundle", "export", *config_args(tmp_path, online), "--cache-dir", str(fleet.cache_dir),
                   "--platforms", "observed", "--fetch", "-o", str(bundle), IMAGE)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "kept linux/amd64, linux/arm/v7 and 2 attestation(s)" in exported.stdout, exported.stdout

    files = tar_blobs(bundle)
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["digest"] == case.top.digest and entry["annotations"]["org.opencontainers.image.ref.name"] == IMAGE
    assert files["blobs/" + case.top.digest.replace(":", "/")] == case.top.data  # the index's own bytes
    kept = {"linux/amd64", "linux/arm/v7"}
    chosen = kept | {f"attestation:{case.images[k].manifest.digest}" for k in kept}
    wanted = {b.digest for name, img in case.images.items() if name in chosen for b in (img.manifest, *img.blobs())}
    for name, img in case.images.items():
        for blob in (img.manifest, *img.blobs()):
            assert (("blobs/" + blob.digest.replace(":", "/")) in files) == (blob.digest in wanted), (name, blob.digest)
    # a valid OCI layout, read by skopeo: each kept platform copied out of it
    assert skopeo("inspect", "--raw", f"oci-archive:{bundle}:{IMAGE}").returncode == 0
    out = tmp_path / "out"
    copied = skopeo("copy", "--override-arch", "arm", "--override-variant", "v7", f"oci-archive:{bundle}:{IMAGE}",
                    f"dir:{out}")  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest() == case.digest_of("linux/arm/v7")[7:]

    # the site: an empty cache, the bundle imported, the upstream stopped
    offline = f'[[upstream]]\nname = "docker.io"\nurl = "http://127.0.0.1:{free_port()}"\n'
    site_config = config_args(tmp_path, offline)
    site_cache = tmp_path / "site-cache"
    imported = cli("bundle", "import", str(bundle), *site_config, "--cache-dir", str(site_cache))
    assert imported.returncode == 0, imported.stderr
    site = platproxy("", "linux/amd64", site_config, cache=site_cache)
    for spec in kept:
        assert pulled_digest(site, f"platform.{spec.replace('/', '.')}/library/multi:1") == case.digest_of(spec)
    for spec in sorted(kept):  # podman and ctr, each as each platform, as a node pulls
        name = f"{site.address}/platform.{spec.replace('/', '.')}/library/multi:1"
        pulled = podman(storage, "pull", "--tls-verify=false", "--platform", spec, name)
        assert pulled.returncode == 0, pulled.stderr
        shown = podman(storage, "image", "inspect", "--format", "{{.Digest}}", name)
        assert shown.stdout.strip() == case.digest_of(spec), shown.stdout + shown.stderr
        hosts = tmp_path / "hosts" / spec.replace("/", "-") / "docker.io"
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(f'[host."http://{site.address}"]\n  capabilities = ["pull", "resolve"]\n'
                                          f'  [host."http://{site.address}".header]\n'
                                          f'    X-Platproxy-Platform = ["{spec}"]\n')  # fmt: skip
        ctr(containerd, "images", "rm", IMAGE)
        done = ctr(containerd, "images", "pull", "--hosts-dir", str(hosts.parent), "--snapshotter", "native",
                   "--platform", spec, IMAGE)  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        assert image_digest(containerd, IMAGE) == case.digest_of(spec)
    status, _, body = request(site.port, "GET", "/v2/platform.linux.arm64.v8/library/multi/manifests/1",
                              headers={"Accept": OCI_MANIFEST})  # fmt: skip
    message = json.loads(body)["errors"][0]["message"]
    assert status == 404 and case.digest_of("linux/arm64/v8") in message and "linux/arm/v7" in message, message
    status, _, body = request(site.port, "GET", "/v2/platform.all/library/multi/manifests/1",
                                    headers={"Accept": OCI_INDEX})  # fmt: skip
    assert status == 200 and body == case.top.data  # the index, unchanged

    # one flipped byte in a layer: refused by name, the cache untouched
    layout = tmp_path / "site-dir"
    assert cli("bundle", "export", "--cache-dir", str(fleet.cache_dir), "-o", str(layout), IMAGE).returncode == 0
    layer = case.images["linux/arm/v7"].layers[-1].digest
    victim = layout / "blobs" / layer.replace(":", "/")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    fresh = tmp_path / "fresh-cache"
    refused = cli("bundle", "import", str(layout), "--cache-dir", str(fresh))
    assert refused.returncode == 2 and layer.split(":")[1] in refused.stderr and not fresh.exists(), refused.stderr
    before = tree(site_cache)
    again = cli("bundle", "import", str(layout), *site_config, "--cache-dir", str(site_cache))
    assert again.returncode == 2 and tree(site_cache) == before


def test_a_delta_bundle_holds_only_new_blobs_and_both_import(seeded: Seeded, platproxy: Start, tmp_path: Path) -> None:
    platforms = [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm", "variant": "v7"}]
    extra = fresh_case(platforms, layer_mib=1)
    push_case(seeded.registry, "library/extra:1", extra)
    online = config_args(tmp_path, f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n')
    mirror = platproxy("", "linux/amd64", online)
    pull_whole(mirror, "platform.linux.amd64/library/multi:1", tmp_path / "a")
    mirror.stop()
    first, second = tmp_path / "first.tar", tmp_path / "second.tar"
    where = ("--cache-dir", str(mirror.cache_dir))
    assert cli("bundle", "export", *where, "-o", str(first)).returncode == 0
    mirror = platproxy("", "linux/amd64", online, cache=mirror.cache_dir)
    pull_whole(mirror, "platform.linux.amd64/library/extra:1", tmp_path / "b")
    mirror.stop()
    done = cli("bundle", "export", *where, "--since", str(first), "-o", str(second))
    assert done.returncode == 0, done.stderr
    old, new = tar_blobs(first), tar_blobs(second)
    shared = {n for n in new if n.startswith("blobs/")} & {n for n in old if n.startswith("blobs/")}
    assert not shared and any(extra.top.digest.split(":")[1] in n for n in new)
    site_cache = tmp_path / "site"
    offline = config_args(tmp_path, f'[[upstream]]\nname = "docker.io"\nurl = "http://127.0.0.1:{free_port()}"\n')
    early = cli("bundle", "import", str(second), *offline, "--cache-dir", str(site_cache))
    assert early.returncode == 2 and "import the earlier bundle first" in early.stderr
    for bundle in (first, second):
        imported = cli("bundle", "import", str(bundle), *offline, "--cache-dir", str(site_cache))
        assert imported.returncode == 0, imported.stderr
    site = platproxy("", "linux/amd64", offline, cache=site_cache)
    assert pulled_digest(site, "platform.linux.amd64/library/extra:1") == extra.digest_of("linux/amd64")
    assert pulled_digest(site, "platform.linux.amd64/library/multi:1") == seeded.cases["library/multi:1"].digest_of(
        "linux/amd64"
    )


def test_a_bundle_imported_into_a_bucket_is_served_by_a_replica_with_no_upstream(
    seeded: Seeded, platproxy: Start, rgw: Rgw, tmp_path: Path
) -> None:
    case = seeded.cases["library/multi:1"]
    online = config_args(tmp_path, f'[[upstream]]\nname = "docker.io"\nurl = "{seeded.registry.url}"\n')
    mirror = platproxy("", "linux/amd64", online)
    pull_whole(mirror, "platform.linux.arm.v7/library/multi:1", tmp_path / "pulled")
    mirror.stop()
    bundle = tmp_path / "site.tar.zst"
    exported = cli("bundle", "export", "--cache-dir", str(mirror.cache_dir), "-o", str(bundle), IMAGE)
    assert exported.returncode == 0 and "kept linux/arm/v7;" in exported.stdout, exported.stdout + exported.stderr
    tier = config_args(tmp_path, f'[[upstream]]\nname = "docker.io"\nurl = "http://127.0.0.1:{free_port()}"\n'
                       + s3_text(rgw, bucket(rgw)))  # fmt: skip
    imported = cli("bundle", "import", str(bundle), *tier, "--cache-dir", str(tmp_path / "importer"))
    assert imported.returncode == 0, imported.stderr
    replica = platproxy("", "linux/amd64", tier)  # its own, empty cache directory: everything is in the bucket
    pull_whole(replica, "platform.linux.arm.v7/library/multi:1", tmp_path / "offline")
    manifest = (tmp_path / "offline" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == case.digest_of("linux/arm/v7")
