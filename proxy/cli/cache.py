"""``platproxy cache ls | gc | rm IMAGE``: inspect and trim the cache directory directly.

They work on the directory (``--cache-dir``, or the config's) and are safe beside a running
server: SQLite serializes the writes, and a file removed while it is being sent stays readable
for that send.  Temporary files younger than a day are left alone (a running fill owns them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from proxy.cli.common import subcommand
from proxy.config import ConfigError, _size, load_config
from proxy.errors import PlatproxyError
from proxy.oci.names import ImageRef
from proxy.storage.budget import Evictor, needed_by
from proxy.storage.files import FileStore
from proxy.storage.tagindex import TagIndex, TagRecord

DESCRIPTION = "Inspect and trim the cache directory directly (safe beside a running server)."

TMP_GRACE = 86400.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config (for cache.dir and cache.max_size)")
    parser.add_argument("--cache-dir", help="the cache directory (overrides the config)")
    sub = parser.add_subparsers(dest="cache_command", required=True)
    ls = subcommand(sub, "ls", "cached tags with their resolution record")
    ls.add_argument("--json", action="store_true", help="print the records as JSON")
    ls.set_defaults(action=run_ls)
    gc = subcommand(sub, "gc", "drop stale temporary files, reconcile, evict down to the budget")
    gc.add_argument("--max-size", help="budget to evict down to (default: cache.max_size)")
    gc.set_defaults(action=run_gc)
    rm = subcommand(sub, "rm", "forget IMAGE (all its tags, or the one named) and content nothing else uses")
    rm.add_argument("image", help="e.g. alpine, alpine:3.20, ghcr.io/o/r:tag")
    rm.set_defaults(action=run_rm)


def _open(args: argparse.Namespace) -> tuple[FileStore, TagIndex, int]:
    overrides = {"cache.dir": args.cache_dir} if args.cache_dir else {}
    config = load_config(args.config, overrides)
    if config.store.backend != "filesystem":
        raise ConfigError(
            f"this configuration keeps content in the bucket {config.store.s3.bucket!r}, which replicas share: "
            "size it with the bucket's lifecycle rules, not per replica"
        )
    root = config.cache.path()
    if not (root / "index.db").exists():
        raise ConfigError(f"no platproxy cache at {root}")
    return FileStore(root, clean_tmp=False), TagIndex(root / "index.db"), config.cache.max_size


def run_ls(args: argparse.Namespace) -> int:
    try:
        _, tags, _ = _open(args)
    except ConfigError as exc:
        return _fail("ls", str(exc))
    now = time.time()
    rows = [
        {"image": f"{r.upstream}/{r.repo}:{r.tag}", "platform": r.platform or "(not a list)", "label": r.label,
         "digest": r.digest, "index": r.index_digest, "age_s": round(now - r.fetched_at), "host": r.host}
        for r in tags.all_tags()
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'IMAGE':<44} {'RESOLVED FOR':<22} {'PLATFORM':<20} {'AGE':>7}  DIGEST / INDEX")
    for row in rows:
        print(f"{row['image']:<44} {row['host']:<22} {row['platform']:<20} {row['age_s']:>6}s  {row['digest']}")
        if row["index"]:
            print(f"{'':<44} {'':<22} {'':<20} {'':>7}  from {row['index']}")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    try:
        store, tags, budget = _open(args)
        if args.max_size:
            budget = _size(args.max_size)
    except (ConfigError, ValueError) as exc:
        return _fail("gc", str(exc))
    removed_tmp = 0
    for leftover in store.tmp.iterdir():
        if time.time() - leftover.stat().st_mtime > TMP_GRACE:
            leftover.unlink(missing_ok=True)
            removed_tmp += 1
    evictor = Evictor(store, tags, budget, busy=set, unreachable=set)
    victims = evictor.run() if budget else []
    print(json.dumps({"temporary_files_removed": removed_tmp, "evicted": len(victims),
                      "evicted_bytes": sum(v.size for v in victims), "total_bytes": evictor.total}))  # fmt: skip
    return 0


def run_rm(args: argparse.Namespace) -> int:
    try:
        store, tags, _ = _open(args)
        ref = ImageRef.parse(args.image)
    except ConfigError as exc:
        return _fail("rm", str(exc))
    except PlatproxyError as exc:
        return _fail("rm", f"bad image reference {args.image!r}: {exc.message}")
    tag_given = ":" in args.image.rpartition("/")[2]
    doomed = [r for r in tags.all_tags() if _matches(r, ref, tag_given)]
    if not doomed:
        return _fail("rm", f"nothing cached for {args.image}")
    keep = needed_by(store, tags, [r for r in tags.all_tags() if r not in doomed])
    gone = needed_by(store, tags, doomed) - keep
    tags.delete_tags(doomed)
    for digest in gone:
        store.remove(digest)
        tags.forget_content(digest)
        tags.forget_manifest(digest)
    tags.forget_conversions(gone)
    print(json.dumps({"tags_removed": [f"{r.upstream}/{r.repo}:{r.tag}" for r in doomed], "files_removed": len(gone)}))
    return 0


def _matches(record: TagRecord, ref: ImageRef, tag_given: bool) -> bool:
    """``registry/repo`` as parsed, or ``<upstream name>/<repo>`` (the path-prefix form)."""
    names = {(ref.registry, ref.name)}
    first, _, rest = ref.name.partition("/")
    if rest:
        names.add((first, rest))
    return (record.upstream, record.repo) in names and (not tag_given or record.tag == ref.reference)


def _fail(command: str, message: str) -> int:
    print(f"platproxy cache {command}: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
