"""``platproxy``: the command line (``serve``, ``hostinfo``, ``resolve``, ...)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hostinfo import cli as hostinfo_cli
from proxy.cli import cache as cache_cli
from proxy.cli import config as config_cli
from proxy.cli import online as online_cli
from proxy.cli import prefetch
from proxy.cli import resolve as resolve_cli
from proxy.cli import serve as serve_cli
from proxy.http.app import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="platproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sv = sub.add_parser("serve", help="run the mirror")
    serve_cli.add_arguments(sv)
    sv.set_defaults(func=serve_cli.run)
    hi = sub.add_parser("hostinfo", help="print this host's platform and what it runs")
    hostinfo_cli.add_arguments(hi)
    hi.set_defaults(func=hostinfo_cli.run)
    pre = sub.add_parser("prefetch", help="warm a running platproxy for this host or given platforms")
    prefetch.add_arguments(pre)
    pre.set_defaults(func=prefetch.run)
    cc = sub.add_parser("cache", help="list, trim or remove cached images")
    cache_cli.add_arguments(cc)
    cf = sub.add_parser("config", help="check a configuration")
    config_cli.add_arguments(cf)
    pf = sub.add_parser("platforms", help="list the platforms a live image offers, with validation warnings")
    online_cli.add_platforms_arguments(pf)
    pf.set_defaults(func=online_cli.run_platforms)
    rs = sub.add_parser("resolve", help="show which manifest of an index this host gets, and why")
    resolve_cli.add_arguments(rs)
    rs.set_defaults(func=_resolve)
    return parser


def _resolve(args: argparse.Namespace) -> int:
    """``resolve IMAGE`` asks a live registry; ``resolve --index FILE`` works offline."""
    if (args.image is None) == (args.index is None):
        print("platproxy resolve: give either IMAGE or --index FILE", file=sys.stderr)
        return 2
    return online_cli.run_resolve_image(args) if args.image else resolve_cli.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("warning")  # logs go to stderr; stdout is for the command's own output
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
