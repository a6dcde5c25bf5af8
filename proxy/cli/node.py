"""``platproxy node setup | undo``: point this node's container runtimes at the mirror.

``setup`` writes, for each runtime (detected, or ``--runtime``), the drop-in it reads
(``proxy.node.dropins``) where it really reads it (containerd: the ``config_path`` of
``containerd config dump``), keeps every setting it did not write, changes nothing when run
again, and records what it wrote; ``undo`` puts back exactly what was there.  ``--root DIR``
writes under DIR instead of ``/`` (tests, image builds); ``--dry-run`` prints the files and
their diff.  What each runtime then needs (a restart, a reload, a config line) is said.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from hostinfo.probe import host_profile
from proxy.cli.common import fail
from proxy.node.changes import Change, ChangeError, apply, planned, undo
from proxy.node.containerd import CONVENTIONAL, DumpError, config_path_line, config_paths
from proxy.node.dropins import DropInError, hosts_toml, k3s_registries, merge_daemon_json, registries_conf

DESCRIPTION = "Point this node's container runtimes at the mirror (and undo it)."
RUNTIMES = ("containerd", "docker", "podman", "k3s")
BINARIES = {"containerd": "containerd", "docker": "dockerd", "podman": "podman", "k3s": "k3s"}


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
    setup.add_argument("--ca", default="", help="a CA file the runtimes trust for the mirror (https)")
    setup.add_argument("--platform", default="", help="the platform to declare (default: this node's, detected)")
    setup.add_argument("--containerd-config", default="", help="the config.toml containerd runs with")
    setup.add_argument("--root", type=Path, default=Path("/"), help="write under this directory instead of /")
    setup.add_argument("--dry-run", action="store_true", help="print the files and their diff, write nothing")
    setup.set_defaults(action=run_setup)
    remove = sub.add_parser("undo", help="put back exactly what setup changed",
                            description="Put back every file `node setup` wrote under --root as it was before, "
                            "and remove the directories it made.")  # fmt: skip
    remove.add_argument("--root", type=Path, default=Path("/"), help="the directory setup wrote under")
    remove.set_defaults(action=run_undo)


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def containerd_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """The hosts directory the running containerd reads first, and what to tell the user."""
    tool = shutil.which("containerd")
    note = ""
    paths: list[str] = []
    if tool:
        command = [tool, *(["--config", args.containerd_config] if args.containerd_config else []), "config", "dump"]
        dump = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if dump.returncode == 0:
            paths = config_paths(dump.stdout)
    if not paths:
        note = (f"containerd: config_path is not set, so its CRI reads no hosts directory: wrote {CONVENTIONAL}; "
                f"add to its config.toml (then restart containerd):\n{config_path_line(2)}")  # fmt: skip
        paths = [CONVENTIONAL]
    return under(args.root, paths[0]), note


def plan(args: argparse.Namespace, platform: str) -> tuple[list[Change], list[str]]:
    registries = [r.strip() for r in args.registries.split(",") if r.strip()]
    runtimes = [r for r in args.runtime if r != "auto"] or [r for r in RUNTIMES if shutil.which(BINARIES[r])]
    changes: list[Change] = []
    notes: list[str] = []
    for runtime in dict.fromkeys(runtimes):
        if runtime == "containerd":
            directory, note = containerd_dir(args)
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
    return changes, notes


def run_setup(args: argparse.Namespace) -> int:
    mirror = urlsplit(args.mirror)
    if mirror.scheme not in ("http", "https") or not mirror.hostname or mirror.path.strip("/"):
        return fail("node setup", f"--mirror {args.mirror!r}: give the mirror's URL, e.g. http://10.0.0.5:5000")
    args.mirror = args.mirror.rstrip("/")
    if args.ca and not Path(args.ca).is_file():
        return fail("node setup", f"--ca {args.ca}: no such file")
    try:
        platform = str(host_profile(args.platform).platform)
        changes, notes = plan(args, platform)
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
    try:
        written = apply(args.root, changes)
    except ChangeError as exc:
        return fail("node setup", f"{exc.strerror} (nothing was changed)")
    if not written:
        print(f"nothing to change: every runtime already pulls through {args.mirror} as {platform}")
    for change in written:
        print(f"wrote {change.path}")
    for note in notes if written else []:
        print(note)
    return 0


def run_undo(args: argparse.Namespace) -> int:
    try:
        done = undo(args.root)
    except OSError as exc:
        return fail("node undo", f"{exc.strerror or exc}")
    print("\n".join(done) if done else "nothing to undo: setup wrote nothing here")
    return 0


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
