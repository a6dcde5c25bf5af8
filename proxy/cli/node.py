"""``platproxy node setup | check | undo``: point this node's container runtimes at the mirror,
prove it, and take it back.

``setup`` asks the mirror first (an unreachable one is bad input: nothing is written), then
writes, for each runtime (detected, or ``--runtime``), the drop-in it reads
(``proxy.node.dropins``) where it really reads it (containerd: the ``config_path`` of
``containerd config dump``), keeps every setting it did not write, changes nothing when run
again, and records what it wrote.  Runtimes that cannot send the node header (Docker, podman,
k3s) make the node register its platform with the mirror.  ``undo`` puts back exactly what was
there and removes the registration.  ``--root DIR`` writes under DIR instead of ``/`` (tests,
image builds; ``--offline`` there: nothing is asked of the mirror); ``--dry-run`` prints the
files and their diff.  What each runtime then needs (a restart, a reload, a config line) is
said.  ``check`` is ``proxy.cli.nodecheck``.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hostinfo.probe import host_profile
from proxy.cli.common import fail
from proxy.cli.nodecheck import run_check
from proxy.cli.nodemirror import Mirror, MirrorError
from proxy.cli.noderuntimes import (
    BINARIES,
    NO_HEADER,
    RUNTIMES,
    add_runtime_arguments,
    containerd_dir,
    installed,
    under,
)
from proxy.node.changes import Change, ChangeError, apply, planned, recorded_setup, undo
from proxy.node.containerd import DumpError
from proxy.node.dropins import DropInError, hosts_toml, k3s_registries, merge_daemon_json, registries_conf

DESCRIPTION = "Point this node's container runtimes at the mirror, prove it, and undo it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="node_command", required=True)
    setup = sub.add_parser("setup", help="write each runtime's drop-in for the mirror",
                           description="Write the drop-in of each container runtime on this node (detected, or "
                           "--runtime) so that its pulls go through the mirror, declaring this node's platform; "
                           "nothing changes on a second run, and `node undo` puts back what was there.")  # fmt: skip
    setup.add_argument("--mirror", required=True, help="the mirror's URL, e.g. http://10.0.0.5:5000")
    setup.add_argument("--runtime", action="append", choices=("auto", *RUNTIMES), default=[],
                       help="a runtime to set up (repeatable; default auto: those installed)")  # fmt: skip
    setup.add_argument("--registries", default="docker.io",
                       help="registries to mirror, comma-separated, or all (containerd's _default)")  # fmt: skip
    setup.add_argument("--platform", default="", help="the platform to declare (default: this node's, detected)")
    add_runtime_arguments(setup)
    setup.add_argument("--dry-run", action="store_true", help="print the files and their diff, write nothing")
    setup.add_argument("--offline", action="store_true",
                       help="write the files without asking the mirror (an image build): no registration")  # fmt: skip
    setup.set_defaults(action=run_setup)
    check = sub.add_parser("check", help="prove that each runtime pulls through the mirror",
                           description="Make each runtime set up here pull a one-time canary the mirror serves "
                           "itself, then ask the mirror what it saw: one verdict per runtime and registry; exit 0 "
                           "only when every runtime is proven.")  # fmt: skip
    check.add_argument("--mirror", default="", help="the mirror's URL (default: the one setup wrote)")
    check.add_argument("--runtime", action="append", choices=("auto", *RUNTIMES), default=[],
                       help="a runtime to check (repeatable; default: those setup wrote for)")  # fmt: skip
    check.add_argument("--registries", default="", help="registries to check (default: those setup wrote)")
    check.add_argument("--platform", default="", help="the node's platform (default: the one setup declared)")
    add_runtime_arguments(check)
    check.set_defaults(action=run_check)
    remove = sub.add_parser("undo", help="put back exactly what setup changed",
                            description="Put back every file `node setup` wrote under --root as it was before, "
                            "remove the directories it made, and the node's registration.")  # fmt: skip
    remove.add_argument("--root", type=Path, default=Path("/"), help="the directory setup wrote under")
    remove.set_defaults(action=run_undo)


def plan(args: argparse.Namespace, platform: str, runtimes: list[str]) -> tuple[list[Change], list[str], str]:
    """The files to write, what to tell the user, and the containerd hosts directory used."""
    registries = [r.strip() for r in args.registries.split(",") if r.strip()]
    changes: list[Change] = []
    notes: list[str] = []
    hosts = ""
    for runtime in runtimes:
        if runtime == "containerd":
            directory, note = containerd_dir(args)
            hosts = str(directory)
            notes += [note] if note else []
            for registry in ["_default"] if registries == ["all"] else registries:
                changes.append(planned(directory / registry / "hosts.toml", hosts_toml(args.mirror, platform, args.ca)))
        elif runtime == "docker":
            path = under(args.root, "/etc/docker/daemon.json")
            before = path.read_text() if path.exists() else None
            try:
                changes.append(Change(path, merge_daemon_json(before, args.mirror), before))
            except DropInError as exc:
                raise DropInError(f"{path} {exc}") from None
            notes.append("docker: mirrors Docker Hub only; reload it to take effect (systemctl reload docker)")
        elif runtime == "podman":
            listed = [r for r in registries if r != "all"] or ["docker.io"]
            changes.append(planned(under(args.root, "/etc/containers/registries.conf.d/50-platproxy.conf"),
                                   registries_conf(args.mirror, listed)))  # fmt: skip
        elif runtime == "k3s":
            listed = [r for r in registries if r != "all"] or ["docker.io"]
            path = under(args.root, "/etc/rancher/k3s/registries.yaml")
            change = planned(path, k3s_registries(args.mirror, listed))
            if change.before is not None and "platproxy node setup" not in change.before:
                raise DropInError(f"{path} exists and was not written by platproxy: add the mirror to its "
                                  "mirrors: yourself (setup does not rewrite another's YAML)")  # fmt: skip
            changes.append(change)
            notes.append("k3s: reads registries.yaml at start: restart k3s (or k3s-agent)")
    return changes, notes, hosts


def register(args: argparse.Namespace, platform: str, runtimes: list[str]) -> tuple[bool, str]:
    """Register this node when a runtime cannot send the header; (registered, what to say).
    ``MirrorError`` when the mirror cannot be asked (nothing is written then)."""
    blind = [r for r in runtimes if r in NO_HEADER]
    if not blind or args.offline or args.dry_run:
        return False, ""
    try:
        kept = Mirror(args.mirror, args.ca).register(platform, blind[0])
    except MirrorError as exc:
        if exc.status == 403:  # the mirror takes none: Docker is still placed by its User-Agent
            return False, f"{', '.join(blind)}: not registered ({exc}); pulls are placed by rules or the User-Agent"
        raise
    return True, f"registered {kept.get('address', 'this node')} as {platform} for {', '.join(blind)}"


def run_setup(args: argparse.Namespace) -> int:
    mirror = urlsplit(args.mirror)
    if mirror.scheme not in ("http", "https") or not mirror.hostname or mirror.path.strip("/"):
        return fail("node setup", f"--mirror {args.mirror!r}: give the mirror's URL, e.g. http://10.0.0.5:5000")
    args.mirror = args.mirror.rstrip("/")
    if args.ca and not Path(args.ca).is_file():
        return fail("node setup", f"--ca {args.ca}: no such file")
    runtimes = list(dict.fromkeys([r for r in args.runtime if r != "auto"] or installed(args)))
    missing = [r for r in runtimes if r not in installed(args)]
    if missing and args.root == Path("/"):  # under another root (an image build) it need not run here
        return fail("node setup", f"{', '.join(missing)}: not installed here (no {BINARIES[missing[0]]} on PATH, "
                    "no socket): leave it out, or give --root for a tree that is not this machine's")  # fmt: skip
    try:
        platform = str(host_profile(args.platform).platform)
        if not args.offline:
            Mirror(args.mirror, args.ca).probe()
        changes, notes, hosts = plan(args, platform, runtimes)
        registered, said = register(args, platform, runtimes)
    except MirrorError as exc:
        return fail("node setup", f"{exc} (nothing was changed)")
    except (DropInError, DumpError, ValueError) as exc:
        return fail("node setup", str(exc))
    except OSError as exc:
        return fail("node setup", f"cannot read {getattr(exc, 'filename', '')}: {exc.strerror or exc}")
    if not changes:
        return fail("node setup", "no container runtime found here: name one with --runtime")
    if args.dry_run:
        for change in changes:
            print(f"{'unchanged' if not change.needed else 'would write'} {change.path}")
            diff = difflib.unified_diff((change.before or "").splitlines(True), change.text.splitlines(True),
                                        str(change.path), str(change.path))  # fmt: skip
            print("".join(diff), end="")
        return 0
    setup: dict[str, Any] = {"mirror": args.mirror, "runtimes": runtimes, "platform": platform, "ca": args.ca,
                             "registries": [r.strip() for r in args.registries.split(",") if r.strip()],
                             "registered": registered, "containerd_dir": hosts}  # fmt: skip
    try:
        written = apply(args.root, changes, setup)
    except ChangeError as exc:
        if registered:
            _forget_registration(args.mirror, args.ca)
        return fail("node setup", f"{exc.strerror} (nothing was changed)")
    if not written:
        renewed = " (its registration renewed)" if registered else ""
        print(f"nothing to change: every runtime already pulls through {args.mirror} as {platform}{renewed}")
    for change in written:
        print(f"wrote {change.path}")
    if said and (written or not registered):
        print(said)
    for note in notes if written else []:
        print(note)
    return 0


def _forget_registration(mirror: str, ca: str) -> str:
    try:
        Mirror(mirror, ca).unregister()
    except MirrorError as exc:
        return f"the registration stays until it expires: {exc}"
    return f"removed this node's registration at {mirror}"


def run_undo(args: argparse.Namespace) -> int:
    setup = recorded_setup(args.root)
    try:
        done = undo(args.root)
    except OSError as exc:
        return fail("node undo", f"{exc.strerror or exc}")
    if setup.get("registered"):
        done.append(_forget_registration(str(setup.get("mirror", "")), str(setup.get("ca", ""))))
    print("\n".join(done) if done else "nothing to undo: setup wrote nothing here")
    return 0


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
