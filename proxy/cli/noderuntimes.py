"""The container runtimes on this node, as ``node setup`` and ``node check`` find them: which are
installed (a binary on PATH, or the runtime's socket), and where the running containerd reads
its hosts directories (``containerd config dump``, read by ``proxy.node.containerd``)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from proxy.node.containerd import CONVENTIONAL, config_path_line, config_paths

RUNTIMES = ("containerd", "docker", "podman", "k3s")
BINARIES = {"containerd": "containerd", "docker": "dockerd", "podman": "podman", "k3s": "k3s"}
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
DOCKER_HOST = "unix:///var/run/docker.sock"
NO_HEADER = ("docker", "podman", "k3s")
"""Runtimes whose requests cannot carry the node header: the node registers instead."""


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def installed(args: argparse.Namespace) -> list[str]:
    """The runtimes found here: a binary on PATH, or the socket it serves on."""
    sockets = {"containerd": args.containerd_address or CONTAINERD_SOCKET,
               "docker": args.docker_host.removeprefix("unix://")}  # fmt: skip
    return [r for r in RUNTIMES if shutil.which(BINARIES[r]) or (r in sockets and Path(sockets[r]).exists())]


def containerd_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """The hosts directory the running containerd reads first, and what to tell the user (a
    note when its ``config_path`` is unset: the conventional directory, and the line to add)."""
    tool = shutil.which("containerd")
    note = ""
    paths: list[str] = []
    if tool:
        command = [tool, *(["--config", args.containerd_config] if args.containerd_config else []), "config", "dump"]
        dump = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if dump.returncode == 0:
            paths = config_paths(dump.stdout)
    elif args.containerd_config and Path(args.containerd_config).is_file():
        # no containerd binary here (a DaemonSet's container with the host's /etc mounted): the
        # file itself, which names config_path whenever it is set (the default is unset)
        paths = config_paths(Path(args.containerd_config).read_text())
    if not paths:
        note = (f"containerd: config_path is not set, so its CRI reads no hosts directory: wrote {CONVENTIONAL}; "
                f"add to its config.toml (then restart containerd):\n{config_path_line(2)}")  # fmt: skip
        paths = [CONVENTIONAL]
    return under(args.root, paths[0]), note


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Where each runtime is, for the commands that look at them."""
    parser.add_argument("--root", type=Path, default=Path("/"), help="the node's files are under this directory")
    parser.add_argument("--containerd-config", default="", help="the config.toml containerd runs with")
    parser.add_argument("--containerd-address", default="", help=f"containerd's socket (default {CONTAINERD_SOCKET})")
    parser.add_argument("--docker-host", default=DOCKER_HOST, help=f"Docker's socket (default {DOCKER_HOST})")
    parser.add_argument("--ca", default="", help="a CA file for the mirror (https)")
