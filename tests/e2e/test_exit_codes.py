"""One exit-code table for every command (README, "Commands"): 2 when what a command must talk to
cannot be reached, whichever command it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry import cli, free_port

pytestmark = pytest.mark.e2e


def test_an_unreachable_upstream_or_server_is_2_for_every_command(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    config = tmp_path / "c.toml"
    config.write_text(f'[[upstream]]\nname = "docker.io"\nurl = "http://{nowhere}"\n[cache]\ndir = "{tmp_path}/c"\n')
    runs = {
        "resolve": cli("resolve", f"{nowhere}/library/x:1"),
        "platforms": cli("platforms", f"{nowhere}/library/x:1"),
        "prefetch": cli("prefetch", "--server", f"http://{nowhere}", "library/x:1"),
    }
    for name, done in runs.items():
        assert done.returncode == 2, (name, done.returncode, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, (name, done.stderr)
