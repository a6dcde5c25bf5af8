"""``platproxy report``: what every node pulled through the mirror, what it got, and what would
run where.

Read from the fleet records of the cache directory (or of the bucket, every replica's merged),
never written.  A table for people (image x platform, then a summary per platform), ``--json``
(the same as the page's ``/fleet.json``) or ``--csv`` for scripts; filters by image glob,
platform, outcome and age; ``--target`` adds what-if columns for platforms the fleet does not
run yet, evaluated from the cached indexes with the mirror's resolver; ``--fail-on missing|degraded``
makes it a gate (exit 1, the offending images listed on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from pathlib import Path

from proxy.cli.common import fail
from proxy.config import ConfigError, load_config, parse_duration
from proxy.errors import StoreUnavailable
from proxy.fleet.outcomes import DEGRADED, OUTCOMES
from proxy.fleet.report import Report
from proxy.pull.fleetlog import Refresh, UnknownTarget, fleet_report
from proxy.registry.client import Upstream
from proxy.storage.factory import Load, NoCache, with_fleet_records
from proxy.storage.fleet import FleetError
from proxy.storage.records import FleetRecord

DESCRIPTION = "What every node pulled through the mirror, what it got, and what would run where."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config (its cache directory or bucket)")
    parser.add_argument("--cache-dir", help="the cache directory (overrides the config)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="JSON for scripts (the page's /fleet.json)")
    form.add_argument("--csv", action="store_true", help="one CSV row per image and platform")
    parser.add_argument("--image", default="*", help="only images matching this glob (docker.io/library/*)")
    parser.add_argument("--platform", action="append", default=[], help="only this platform (repeatable)")
    parser.add_argument("--outcome", action="append", default=[], choices=(*OUTCOMES, "degraded"),
                        help="only images whose latest pull had this outcome (repeatable)")  # fmt: skip
    parser.add_argument("--since", default="", help="only pulls seen this recently (7d, 12h)")
    parser.add_argument("--target", action="append", default=[],
                        help="what if a node of this platform pulled every image (repeatable)")  # fmt: skip
    parser.add_argument("--refresh", action="store_true",
                        help="what-if: read each image's index from its upstream now, not from the cache")  # fmt: skip
    parser.add_argument("--fail-on", choices=("missing", "degraded"), default="",
                        help="exit 1 when an image is missing (or degraded) on a platform shown")  # fmt: skip


def _table(report: Report) -> None:
    columns = [*report.platforms, *report.what_if]
    rows = [("IMAGE", *columns)]
    for image, cells in sorted(report.images.items()):
        rows.append((image, *(str(cells[p].outcome) + (f" ({cells[p].detail})" if cells[p].detail else "")
                              if p in cells else "-" for p in columns)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print()
    summary = [("PLATFORM", "NATIVE", "DEGRADED", "MISSING")]
    summary += [(p, str(c["native"]), str(c["degraded"]), str(c["missing"])) for p, c in report.summary().items()]
    widths = [max(len(r[i]) for r in summary) for i in range(4)]
    for row in summary:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, {"cache.dir": args.cache_dir} if args.cache_dir else {})
        since = time.time() - parse_duration(args.since) if args.since else 0.0
    except (ConfigError, ValueError) as exc:
        return fail("report", str(exc))
    outcomes = tuple(o for o in args.outcome if o != "degraded") + (DEGRADED if "degraded" in args.outcome else ())

    async def make(records: list[FleetRecord], problems: list[str], load: Load) -> tuple[Report, list[str], int]:
        refresh = Refresh({u.name: Upstream(u, config.limits) for u in config.upstreams}) if args.refresh else None
        try:
            report = await fleet_report(records, load, images=args.image, platforms=tuple(args.platform),
                                        outcomes=outcomes, since=since, targets=tuple(args.target), now=time.time(),
                                        refresh=refresh)  # fmt: skip
        finally:
            for up in refresh.upstreams.values() if refresh else ():
                await up.close()
        return report, problems + (refresh.problems if refresh else []), len(records)

    try:
        report, problems, seen = asyncio.run(with_fleet_records(config, make))
    except (NoCache, FleetError, StoreUnavailable, UnknownTarget) as exc:
        return fail("report", str(exc))
    for problem in problems:
        print(f"platproxy report: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif args.csv:
        rows = report.rows()
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["image", "platform", "outcome"])
        writer.writeheader()
        writer.writerows(rows)
    elif not seen:
        print("no pulls recorded yet: the report fills as nodes pull through the mirror")
    else:
        _table(report)
    if args.fail_on and (bad := report.offending(args.fail_on)):
        for image, platform, cell in bad:
            print(f"platproxy report: {image} is {cell.outcome} on {platform}" + (f": {cell.reason}" if cell.reason
                  else ""), file=sys.stderr)  # fmt: skip
        return 1
    return 0
