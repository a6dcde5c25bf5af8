"""Costs as the cache grows: a cache directory of 1k, 10k and 100k tags, made by this helper (not
by pulling), served by platproxy.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--seconds 5]

The cache is grown from one real pull: platproxy pulls a small image from a real upstream
(Debian's docker-registry) into a template cache, and the helper adds ``n`` images beside it,
each a tag record, its manifest and a config blob of its own (the manifest also names the real
image's layer), written where platproxy keeps them and recorded in its tag index (records,
manifests, content usage and membership) as a pull would.  Then, per size: the start (to the
first 200 on ``/v2/``) and the RSS once started, the manifest-by-tag and blob-by-digest rates
and p99 at c=64 over the same 1,000 images at every size and over all of them, at random (wrk
with a script), the RSS after them, ``cache ls``,
and a ``cache gc`` that evicts 10% of the bytes.  Timing never fails anything; every answer
under load must be a 200.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import PlatproxyServer, now, wrk  # noqa: E402
from proxy.oci.mediatypes import OCI_CONFIG, OCI_MANIFEST, UPSTREAM_ACCEPT  # noqa: E402
from tests import indexes  # noqa: E402
from tests.registry import Registry, push_case, request  # noqa: E402

CONFIG = '[cache]\ntag_ttl = "1d"\n'
"""Records made at the start of a run stay fresh through it: no revalidation of the made tags."""
IMAGE = "library/small:1"
WORKING_SET = 1000
"""What a fleet pulls of a large cache: the same 1,000 images at every size (all of them at 1k),
so that a line changes with the size of the cache, not with how much of it is asked for.  The
"any of them" lines ask for every image at random: mostly first reads since the start.  The
first run after the start is a line of its own: the start's check of every file against the
usage rows (0.9 s at 100k images, on a thread) and the index's first page reads fall in it; the
lines after it are the steady state the goals speak of."""
LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
"""


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def template(work: Path, upstream: Registry) -> Path:
    """A cache holding one real pull of ``IMAGE`` (a record, a manifest, its config and layer)."""
    server = PlatproxyServer(work, upstream.url, CONFIG).start()
    try:
        status, _, _ = request(server.port, "GET", f"/v2/{IMAGE.replace(':', '/manifests/')}",
                               headers={"Accept": UPSTREAM_ACCEPT})  # fmt: skip
        assert status == 200
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{server.address}/{IMAGE}",
                        f"dir:{work / 'pulled'}"], check=True)  # fmt: skip
    finally:
        server.stop()
    return server.cache


def grow(cache: Path, n: int) -> list[str]:
    """Add ``n`` images to a copy of the template cache; the paths of their tags and blobs."""
    db = sqlite3.connect(cache / "index.db")
    row = db.execute("SELECT upstream, repo, host, digest, platform, label, reason FROM tags").fetchone()
    upstream, _, host, real, platform, label, reason = row
    manifest = json.loads((cache / "blobs" / "sha256" / real[7:9] / real[7:]).read_bytes())
    layer = manifest["layers"][0]
    at = time.time()
    tags, members, content, manifests, paths = [], [], [], [], []
    for i in range(n):
        repo = f"scale/image{i % 1000}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "config": {"Labels": {"scale": str(i)}}}).encode()  # fmt: skip
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
                           "layers": [layer]}, indent=3).encode()  # fmt: skip
        for data in (config, body):
            digest = sha(data)
            path = cache / "blobs" / "sha256" / digest[7:9] / digest[7:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            content.append((digest, len(data), at - random.uniform(0, 86400)))
            members.append((upstream, repo, digest, len(data)))
        members.append((upstream, repo, layer["digest"], layer["size"]))
        digest = sha(body)
        manifests.append((digest, OCI_MANIFEST, len(body)))
        tags.append((upstream, repo, f"t{i}", host, digest, OCI_MANIFEST, digest, None, platform, label, reason,
                     at, at))  # fmt: skip
        paths += [f"/v2/{repo}/manifests/t{i}", f"/v2/{repo}/blobs/{sha(config)}"]
    with db:
        db.executemany("INSERT INTO tags VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", tags)
        db.executemany("INSERT OR IGNORE INTO members VALUES (?,?,?,?)", members)
        db.executemany("INSERT OR REPLACE INTO content VALUES (?,?,?)", content)
        db.executemany("INSERT OR REPLACE INTO manifests VALUES (?,?,?)", manifests)
    db.close()
    return paths


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(command: list[str]) -> tuple[float, str]:
    start = now()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return now() - start, done.stdout


def measure(work: Path, cache: Path, paths: list[str], seconds: int, upstream: str) -> dict[str, float]:
    out: dict[str, float] = {}
    lists: dict[str, Path] = {}
    chosen = random.Random(1).sample(range(len(paths) // 2), WORKING_SET)  # the same images at every size
    for kind, part in (("manifest by tag", "/manifests/"), ("blob by digest", "/blobs/")):
        every = [p for p in paths if part in p]
        for scope, listed in ((f"{WORKING_SET:,} of them", [every[i] for i in chosen]), ("any of them", every)):
            lists[f"{kind}, {scope}"] = path = work / f"{kind.split()[0]}-{len(listed)}.txt"
            path.write_text("\n".join(listed) + "\n")
    server = PlatproxyServer(work, upstream, CONFIG, cache_dir=cache).start()
    try:
        assert server.proc is not None
        out["start (s)"] = server.startup
        out["RSS after start (MiB)"] = rss_mib(server.proc.pid)
        for listed in lists.values():
            listed.with_suffix(".lua").write_text(LUA % listed)
        first = lists[f"manifest by tag, {WORKING_SET:,} of them"].with_suffix(".lua")
        rps, p99 = wrk(f"http://{server.address}/", seconds, script=first)  # while the start's walk runs
        out[f"manifest by tag, {WORKING_SET:,} of them, the first {seconds} s after the start, c=64 (req/s)"] = rps
        out[f"manifest by tag, {WORKING_SET:,} of them, the first {seconds} s after the start, c=64 (p99 ms)"] = p99
        for line, listed in lists.items():  # medians of 3 runs: a p99 at c=64 moves 30% between runs here
            runs = [wrk(f"http://{server.address}/", seconds, script=listed.with_suffix(".lua")) for _ in range(3)]
            out[f"{line}, c=64 (req/s)"] = statistics.median(rps for rps, _ in runs)
            out[f"{line}, c=64 (p99 ms)"] = statistics.median(p99 for _, p99 in runs)
        out["RSS after load (MiB)"] = rss_mib(server.proc.pid)
    finally:
        server.stop()
    cli = [sys.executable, "-m", "proxy.cli", "cache"]
    out["cache ls (s)"], listed_json = timed([*cli, "ls", "--json", "--cache-dir", str(cache)])
    assert len(json.loads(listed_json)["tags"]) >= len(paths) // 2
    db = sqlite3.connect(cache / "index.db")
    total, count = db.execute("SELECT SUM(size), COUNT(*) FROM content").fetchone()
    db.close()
    out["gc to 90% of the bytes (s)"], gc_json = timed([*cli, "gc", "--json", "--cache-dir", str(cache),
                                                        "--max-size", str(int(total * 0.9))])  # fmt: skip
    out["gc: entries evicted"] = json.loads(gc_json)["evicted"]
    out["content entries"] = count
    return out


def bucket_lines(work: Path, objects: int) -> dict[str, float]:
    """``cache ls`` and a ``cache gc`` to 90% of the bytes on a bucket of a real S3 server (Ceph
    RGW) holding ``objects`` objects: a third each tag records, manifests and configs."""
    import asyncio

    from aiobotocore.session import get_session

    from proxy.storage.records import TagRecord
    from proxy.storage.sharedtags import encode, record_key
    from tests.rgw import ACCESS_KEY, SECRET_KEY, Rgw

    rgw = Rgw(work / "rgw").start()
    name, prefix = "scale", "platproxy/"
    rgw.bucket(name)
    images = objects // 3
    sizes: list[int] = []

    async def seed() -> None:
        gate = asyncio.Semaphore(64)
        async with get_session().create_client("s3", **rgw.client_kwargs()) as s3:

            async def put(key: str, data: bytes) -> None:
                async with gate:
                    await s3.put_object(Bucket=name, Key=prefix + key, Body=data)

            async def image(i: int) -> None:
                config = json.dumps({"architecture": "amd64", "os": "linux", "scale": i}).encode()
                body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                                   "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)}
                                   }).encode()  # fmt: skip
                at = time.time() - random.uniform(0, 86400)
                record = TagRecord("docker.io", f"scale/image{i % 1000}", f"t{i}", "", sha(body), OCI_MANIFEST,
                                   sha(body), None, "linux/amd64", "", "", at, at)  # fmt: skip
                sizes.append(len(config) + len(body))
                await put(f"blobs/sha256/{sha(config)[7:]}", config)
                await put(f"blobs/sha256/{sha(body)[7:]}", body)
                await put(record_key("", record.upstream, record.repo, record.tag, record.host), encode(record))

            await asyncio.gather(*(image(i) for i in range(images)))

    try:
        started = now()
        asyncio.run(seed())
        print(f"bucket of {objects} objects made in {now() - started:.1f} s", flush=True)
        config = work / "bucket.toml"
        config.write_text(f'[store]\nbackend = "s3"\n[store.s3]\nendpoint = "{rgw.endpoint}"\nbucket = "{name}"\n'
                          f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n')  # fmt: skip
        cli = [sys.executable, "-m", "proxy.cli", "cache"]
        out: dict[str, float] = {}
        out["bucket: cache ls (s)"], listed = timed([*cli, "ls", "--json", "--config", str(config)])
        assert len(json.loads(listed)["tags"]) == images
        budget = int(sum(sizes) * 0.9)
        out["bucket: gc to 90% of the bytes (s)"], collected = timed(
            [*cli, "gc", "--json", "--config", str(config), "--max-size", str(budget)]
        )
        out["bucket: gc, objects removed"] = json.loads(collected)["objects_removed"]
        return out
    finally:
        rgw.stop()


Record = Callable[[str, str, float], None]


def section(upstream: Registry, work: Path, record: Record, seconds: int, sizes: list[int], bucket_objects: int,
            ) -> None:  # fmt: skip
    """The scale lines of ``bench/run.py`` (and of this script): per size, then the bucket's."""
    push_case(upstream, IMAGE, indexes.alpine_with_attestations())
    base = template(work / "scale-template", upstream)
    results: dict[int, dict[str, float]] = {}
    for n in sizes:
        cache = work / f"scale-{n}"
        shutil.copytree(base, cache)
        paths = grow(cache, n)
        os.sync()  # the made cache's 1 GB (at 100k) on disk before the server starts, not written back under load
        results[n] = measure(work, cache, paths, seconds, upstream.url)
        shutil.rmtree(cache)
        for line, value in results[n].items():
            record(f"{n:,} images cached: {line}", "platproxy", value)
    if len(sizes) > 1:
        low, high = results[sizes[0]], results[sizes[-1]]
        for kind in ("manifest by tag", "blob by digest"):
            line = f"{kind}, {WORKING_SET:,} of them, c=64 (p99 ms)"
            record(f"{kind} p99, {sizes[-1]:,} / {sizes[0]:,} images cached (x; goal at most 1.2)", "platproxy",
                   high[line] / low[line])  # fmt: skip
    if bucket_objects:
        for line, value in bucket_lines(work, bucket_objects).items():
            record(f"{line}, {bucket_objects:,} objects", "platproxy", value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--bucket-objects", type=int, default=100_000, help="0: no bucket lines")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="platproxy-scale-") as tmp:
        work = Path(tmp)
        upstream = Registry(work / "registry").start()
        try:
            section(upstream, work, lambda line, _, value: results.__setitem__(line, value), args.seconds,
                    [int(s) for s in args.sizes.split(",")], args.bucket_objects)  # fmt: skip
        finally:
            upstream.stop()
    print("| measure | platproxy |\n| --- | --- |")
    for line, value in results.items():
        print(f"| {line} | {value:,.0f} |" if value >= 100 else f"| {line} | {value:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
