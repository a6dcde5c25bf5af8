"""``platproxy node check``: proof, not configuration.

For each runtime set up on this node (the setup record, or ``--runtime``) and each registry it
mirrors, the mirror opens a one-time check; the runtime itself pulls the canary
``<registry>/platproxy-check/<nonce>:latest`` as it pulls anything (``ctr`` with the hosts
directory the running containerd reads, ``docker pull``, ``podman pull``); then the mirror says
what it saw for the nonce, and ``proxy.node.verdict`` turns both into one line.  The canary is
removed from the runtime afterwards.  Exit 0 only when every runtime is proven.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any

from hostinfo.probe import host_profile
from proxy.cli.common import fail
from proxy.cli.nodemirror import Mirror, MirrorError
from proxy.cli.noderuntimes import NO_HEADER, containerd_dir, under
from proxy.node.changes import recorded_setup
from proxy.node.verdict import Pull, Verdict, judge

PULL_TIMEOUT = 120
K3S_SOCKET = "/run/k3s/containerd/containerd.sock"
K3S_HOSTS = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"


def _run(command: list[str], env: dict[str, str] | None = None) -> Pull:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PULL_TIMEOUT, check=False,
                              env={**os.environ, **(env or {})})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Pull(False, str(exc))
    return Pull(done.returncode == 0, done.stderr + done.stdout if done.returncode else "")


class Runtime:
    """How one runtime pulls and forgets the canary, and what its configuration says."""

    def __init__(self, name: str, args: argparse.Namespace, setup: dict[str, Any], platform: str) -> None:
        self.name = name
        self.args = args
        self.setup = setup
        self.platform = platform

    def pull(self, ref: str) -> Pull:
        if self.name in ("containerd", "k3s"):
            directory = self.hosts_dir
            return _run([*self.ctr(), "images", "pull", "--platform", self.platform,
                         *(["--hosts-dir", str(directory)] if directory else []), ref])  # fmt: skip
        if self.name == "docker":
            return _run([self.tool("docker"), "-H", self.args.docker_host, "pull", ref])
        return _run([self.tool("podman"), "pull", ref])

    def forget(self, ref: str) -> None:
        if self.name in ("containerd", "k3s"):
            _run([*self.ctr(), "images", "rm", ref])
        elif self.name == "docker":
            _run([self.tool("docker"), "-H", self.args.docker_host, "rmi", ref])
        else:
            _run([self.tool("podman"), "rmi", ref])

    def tool(self, name: str) -> str:
        return shutil.which(name) or name

    def ctr(self) -> list[str]:
        address = self.args.containerd_address or (K3S_SOCKET if self.name == "k3s" else "")
        return [self.tool("ctr"), *(["--address", address] if address else []), "-n", "platproxy-check"]

    @cached_property
    def hosts_dir(self) -> Path | None:
        """The hosts directory the running containerd reads (``None``: its CRI reads none)."""
        if self.name == "k3s":
            return under(self.args.root, K3S_HOSTS)
        found, note = containerd_dir(self.args)
        return None if note else found

    def hints(self, registry: str) -> list[str]:
        """Why this runtime might not have asked the mirror, read from its configuration."""
        root: Path = self.args.root
        if self.name == "containerd":
            found = self.hosts_dir
            if found is None:
                return ["containerd's config_path is not set: its CRI reads no hosts directory"]
            wrote = self.setup.get("containerd_dir", "")
            if wrote and Path(wrote) != found:
                return [f"containerd reads {found}; setup wrote {wrote}"]
            if not (found / registry / "hosts.toml").exists() and not (found / "_default" / "hosts.toml").exists():
                return [f"no hosts.toml for {registry} in {found}"]
        if self.name == "podman":
            drop_ins = sorted((root / "etc/containers/registries.conf.d").glob("*.conf"))
            ours = [p for p in drop_ins if p.name == "50-platproxy.conf"]
            if not ours:
                return ["no platproxy drop-in in registries.conf.d"]
            later = [p for p in drop_ins if p.name > ours[0].name and f'"{registry}"' in p.read_text(errors="replace")]
            if later:
                return [f"the drop-in is shadowed by {later[-1]}"]
        if self.name == "docker" and registry != "docker.io":
            return ["Docker mirrors Docker Hub only"]
        return []


def check_one(mirror: Mirror, runtime: Runtime, registry: str) -> Verdict:
    try:
        nonce = mirror.open_check()
    except MirrorError as exc:
        return Verdict(runtime.name, registry, False, f"{runtime.name} ({registry}): not proven: {exc}")
    ref = f"{registry}/platproxy-check/{nonce}:latest"
    pull = runtime.pull(ref)
    try:
        sightings = mirror.read_check(nonce)
    except MirrorError as exc:
        return Verdict(runtime.name, registry, False, f"{runtime.name} ({registry}): not proven: {exc}")
    finally:
        if pull.ok:
            runtime.forget(ref)
    return judge(runtime.name, registry, pull, sightings, [] if sightings else runtime.hints(registry))


def run_check(args: argparse.Namespace) -> int:
    setup = recorded_setup(args.root)
    url = (args.mirror or setup.get("mirror", "")).rstrip("/")
    if not url.startswith(("http://", "https://")):
        return fail("node check", "give the mirror's URL (--mirror), or run node setup first")
    runtimes = [r for r in args.runtime if r != "auto"] or list(setup.get("runtimes", []))
    if not runtimes:
        return fail("node check", "no runtime was set up here (node setup) or named (--runtime)")
    listed = [r.strip() for r in (args.registries or ",".join(setup.get("registries", ["docker.io"]))).split(",")]
    registries = [r for r in listed if r and r != "all"] or ["docker.io"]
    platform = setup.get("platform") or str(host_profile(args.platform).platform)
    mirror = Mirror(url, args.ca or setup.get("ca", ""))
    if setup.get("registered") and url == setup.get("mirror"):
        # renewed on every check (a registration expires unless renewed); a failure is the check's to show
        with contextlib.suppress(MirrorError, StopIteration):
            mirror.register(platform, next(r for r in runtimes if r in NO_HEADER))
    tools = {"containerd": "ctr", "k3s": "ctr", "docker": "docker", "podman": "podman"}
    if absent := [r for r in dict.fromkeys(runtimes) if not shutil.which(tools[r])]:
        return fail("node check", f"{absent[0]}: {tools[absent[0]]} is not installed here, and the check pulls "
                    "the canary with it (install it, or leave that runtime out with --runtime)")  # fmt: skip
    verdicts = []
    for name in dict.fromkeys(runtimes):
        runtime = Runtime(name, args, setup, platform)
        for registry in registries if name != "docker" else ["docker.io"]:
            verdict = check_one(mirror, runtime, registry)
            print(("proven: " if verdict.proven else "NOT proven: ") + verdict.line, flush=True)
            verdicts.append(verdict)
    return 0 if all(v.proven for v in verdicts) else 1
