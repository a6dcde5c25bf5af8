"""The README's first pull runs as written: its shell block, in a real bash from the repository
root, with the real registry, platproxy and skopeo; then the pulled manifests are checked."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]
LEFTOVERS = ("/tmp/hello", "/tmp/hello-armv7", "/tmp/platproxy-demo-cache", "/tmp/platproxy-demo.toml")


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A first pull", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's first-pull section has no sh block"
    return block.group(1)


def test_the_readmes_first_pull_works_offline() -> None:
    for port in (5000, 5001):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} is taken: the walkthrough uses it"
    for path in LEFTOVERS:
        shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)
    script = "set -e\n" + walkthrough() + "\nkill %1 %2\nwait\n"
    try:
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              check=False)  # fmt: skip
    finally:
        subprocess.run(["pkill", "-f", "platproxy-demo.toml|demo_upstream.py --port 5001"], check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    inspected, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{") :])
    assert inspected["Name"].endswith("library/hello") and inspected["Os"] == "linux"
    host = json.loads(Path("/tmp/hello/manifest.json").read_text())
    arm = json.loads(Path("/tmp/hello-armv7/manifest.json").read_text())
    arm_config = json.loads(Path("/tmp/hello-armv7", arm["config"]["digest"].split(":")[1]).read_text())
    assert (arm_config["architecture"], arm_config.get("variant")) == ("arm", "v7")
    assert host != arm or inspected["Architecture"] == "arm"  # this host's own entry, not the selector's
    assert "resolved" in done.stderr
    for path in LEFTOVERS:
        shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)
