"""Bundles: export and import throughput against ``skopeo copy --all`` of the same image into an
OCI layout (the same bytes, the same disk), and the trimmed bundle's size against the untrimmed.

    .venv/bin/python bench/bundle.py [--platforms 6] [--layer-mib 48] [--runs 3]

An image of N platforms, each with its own layer of random bytes (incompressible, as real
binaries nearly are), is pushed to a Distribution registry and pulled whole through platproxy
(``platform.all``, so the mirror's cache holds every platform).  Then, medians of ``--runs``:
``bundle export --platforms all`` to a ``.tar`` (MB/s of bundle written), ``skopeo copy --all``
from platproxy to an ``oci:`` directory (MB/s), ``bundle import`` of the tar into an empty cache
(MB/s), and the size of a bundle of two platforms against all of them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.indexes import Case  # noqa: E402
from tests.ocibuild import gzip_layer, image, index  # noqa: E402
from tests.registry import Platproxy, Registry, push_case  # noqa: E402

PLATFORMS = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/ppc64le", "linux/s390x",
             "linux/riscv64", "linux/386"]  # fmt: skip


def timed(command: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.monotonic() - started


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platforms", type=int, default=6)
    parser.add_argument("--layer-mib", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "proxy.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        named = {}
        for spec in PLATFORMS[: args.platforms]:
            platform = dict(zip(("os", "architecture", "variant"), spec.split("/"), strict=False))
            layer = gzip_layer({"opt/payload.bin": os.urandom(args.layer_mib * 2**20)})
            named[spec] = image(platform, [layer])
        case = Case(index(list(named.values())), [b for i in named.values() for b in (i.manifest, *i.blobs())], named)
        registry = Registry(work / "registry").start()
        proxy = None
        try:
            push_case(registry, "library/big:1", case)
            config = work / "config.toml"
            config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "{registry.url}"\n')
            proxy = Platproxy(work / "cache", "", "linux/amd64", ["--config", str(config)], log_dir=work).start()
            timed(["skopeo", "copy", "--all", "--src-tls-verify=false",
                   f"docker://{proxy.address}/platform.all/library/big:1", f"oci:{work / 'warm'}:big"])  # fmt: skip
            times: dict[str, list[float]] = {"export": [], "skopeo": [], "import": []}
            image_name = "docker.io/library/big:1"
            for n in range(args.runs):
                out = work / f"all-{n}.tar"
                times["export"].append(timed([*cli, "bundle", "export", "--cache-dir", str(work / "cache"),
                                              "--platforms", "all", "-o", str(out), image_name]))  # fmt: skip
                layout = work / f"skopeo-{n}"
                times["skopeo"].append(timed(["skopeo", "copy", "--all", "--src-tls-verify=false",
                                              f"docker://{proxy.address}/platform.all/library/big:1",
                                              f"oci:{layout}:big"]))  # fmt: skip
                times["import"].append(timed([*cli, "bundle", "import", str(out), "--cache-dir",
                                              str(work / f"site-{n}")]))  # fmt: skip
                shutil.rmtree(layout)
                shutil.rmtree(work / f"site-{n}")
            full = size_of(work / "all-0.tar")
            two = work / "two.tar"
            timed([*cli, "bundle", "export", "--cache-dir", str(work / "cache"), "--platforms",
                   "linux/amd64,linux/arm/v7", "-o", str(two), image_name])  # fmt: skip
        finally:
            if proxy is not None:
                proxy.stop()
            registry.stop()
        mb = full / 1e6
        rates = {k: mb / statistics.median(v) for k, v in times.items()}
        print(
            f"bundles: one image of {args.platforms} platforms x {args.layer_mib} MiB, {mb:.0f} MB; "
            f"medians of {args.runs}"
        )
        print(f"  bundle export --platforms all (.tar): {rates['export']:.0f} MB/s")
        print(
            f"  skopeo copy --all to an oci: layout: {rates['skopeo']:.0f} MB/s "
            f"(export at {rates['export'] / rates['skopeo']:.2f}x)"
        )
        print(
            f"  bundle import (.tar, verified, into an empty cache): {rates['import']:.0f} MB/s "
            f"({rates['import'] / rates['skopeo']:.2f}x skopeo's copy)"
        )
        print(
            f"  trimmed to linux/amd64 + linux/arm/v7: {size_of(two) / 1e6:.0f} MB of {mb:.0f} MB "
            f"({size_of(two) / full:.0%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
