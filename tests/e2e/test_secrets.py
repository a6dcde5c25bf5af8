"""No secret is ever printed: a distinct value planted in every secret key, through every source
(the file, the environment, a flag), is found in no output of ``config check`` or ``serve``,
whether the config is good, bad, or the store cannot be reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.registry import cli, free_port

pytestmark = pytest.mark.e2e

SECRET_KEYS = {  # environment variable -> the TOML that sets the same key in the file
    "PLATPROXY_UPSTREAMS__0__PASSWORD": ("upstream", "password"),
    "PLATPROXY_STORE__S3__ACCESS_KEY": ("s3", "access_key"),
    "PLATPROXY_STORE__S3__SECRET_KEY": ("s3", "secret_key"),
    "PLATPROXY_STORE__S3__PEER_SECRET": ("s3", "peer_secret"),
}


def config_text(values: dict[str, str], bucket: str = "platproxy-cache") -> str:
    """A config whose secret keys hold ``values`` (key name -> value; absent: not in the file)."""
    upstream = '[[upstream]]\nname = "r.example"\nurl = "https://r.example"\nusername = "u"\n'
    if "password" in values:
        upstream += f'password = "{values["password"]}"\n'
    s3 = (f'[store]\nbackend = "s3"\n[store.s3]\nendpoint = "http://127.0.0.1:{free_port()}"\nbucket = "{bucket}"\n'
          f'peer_listen = "127.0.0.1:{free_port()}"\n')  # fmt: skip
    for key in ("access_key", "secret_key", "peer_secret"):
        if key in values:
            s3 += f'{key} = "{values[key]}"\n'
    return upstream + s3


def planted(source: str) -> dict[str, str]:
    """One distinct value per secret key, long enough to pass every check (peer_secret: 16 chars)."""
    return {key: f"{source}-{key}-Pl4nted-{i}-xyzzy" for i, (_, key) in enumerate(SECRET_KEYS.values())}


def serve_output(args: list[str], env: dict[str, str], seconds: float = 3.0) -> str:
    """Everything ``serve`` prints in its first seconds (or until it exits), then SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, **env}, text=True)  # fmt: skip
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.mark.parametrize("bad", [False, True])
def test_no_secret_from_any_source_reaches_any_output(tmp_path: Path, bad: bool) -> None:
    from_file, from_env = planted("file"), planted("env")
    config = tmp_path / "platproxy.toml"
    config.write_text(config_text(from_file, bucket="B" if bad else "platproxy-cache"))  # "B": an invalid bucket
    env = {var: from_env[key] for var, (_, key) in SECRET_KEYS.items()}
    outputs = []
    for environment in ({}, env):  # the file's values alone, then the environment's over them
        done = cli("config", "check", str(config), env=environment)
        assert done.returncode == (2 if bad else 0), done.stderr
        outputs += [done.stdout, done.stderr]
        listen = ["--listen", f"127.0.0.1:{free_port()}", "--cache-dir", str(tmp_path / "cache")]
        outputs.append(serve_output(["--config", str(config), *listen], environment))
    if not bad:
        provenance = "\n".join(outputs)
        assert "[[upstream]] 0 password from PLATPROXY_UPSTREAMS__0__PASSWORD, over the file's value" in provenance
    # a flag: the only one that can carry a secret is an upstream URL with credentials in it
    flag = cli("serve", "--upstream", "http://u:flag-Pl4nted-xyzzy@127.0.0.1:9", "--listen", f"127.0.0.1:{free_port()}")
    assert flag.returncode == 2 and "username and password" in flag.stderr
    outputs += [flag.stdout, flag.stderr]
    everything = "\n".join(outputs)
    for value in [*from_file.values(), *from_env.values(), "flag-Pl4nted-xyzzy"]:
        assert value not in everything, (value, everything[-3000:])
    assert "Pl4nted" not in everything
