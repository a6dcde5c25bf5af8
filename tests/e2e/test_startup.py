"""Start-up as an operator meets it: bad values and bad cache directories are one line naming the
key or the directory (exit 2, nothing written), the banner only once the socket is bound, a log
line at shutdown, SIGHUP re-reads what it can and never stops the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.registry import Platproxy, cli, free_port, request


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[cache]\nmax_size = -5\n", "config key [cache] max_size: -5 is negative"),
        ('[limits]\nread_timeout = "0s"\n', "config key [limits] read_timeout: must be more than 0"),
        ('[platform]\noverride = "linux/amd65"\n', "(did you mean 'linux/amd64'?)"),
        ('[platform]\noverride = "linux/amd64/v7"\n', "amd64 has no variant 'v7'"),
        ('[[upstream]]\nname = "r"\nurl = "http://127.0.0.1:5001/v2/"\n', "drop /v2/: platproxy adds it"),
        ("[cache]\nmax_sise = 1\n", "unknown key `max_sise` in [cache]; did you mean `max_size`?"),
        ('[auth]\nhtpasswd = "/nonexistent"\n', "config key [auth] htpasswd: cannot read /nonexistent"),
    ],
)
def test_config_check_and_serve_refuse_the_same_values(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    cache = tmp_path / "cache"
    serve = ("serve", "--config", str(path), "--cache-dir", str(cache), "--listen", f"127.0.0.1:{free_port()}")
    for args in (("config", "check", str(path)), ("config", "check", "--config", str(path)), serve):
        done = cli(*args)
        assert done.returncode == 2, done
        assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    assert not cache.exists()


def test_resolve_and_serve_refuse_a_platform_that_does_not_exist(tmp_path: Path) -> None:
    done = cli("resolve", "--platform", "linux/arm/v9", "--index", str(tmp_path / "none.json"))
    assert (
        done.returncode == 2 and "arm has no variant 'v9' in 'linux/arm/v9' (did you mean 'linux/arm'?)" in done.stderr
    )
    done = cli("serve", "--platform", "linux/amd65", "--cache-dir", str(tmp_path / "c"), "--listen", "127.0.0.1:1")
    assert done.returncode == 2
    assert "config key [platform] override (from a command-line flag): unknown architecture 'amd65'" in done.stderr


def test_an_ipv6_upstream_flag_starts_the_server(tmp_path: Path) -> None:
    proxy = Platproxy(tmp_path / "cache", "http://[::1]:5999", log_dir=tmp_path).start()
    try:
        assert "upstreams [::1]:5999=http://[::1]:5999" in proxy.log()
    finally:
        proxy.stop()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only bind mount (root ignores permission bits, not a read-only mount)."""
    path = tmp_path / "ro"
    path.mkdir()
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def serve_with_cache(cache: Path, *, drop_root: bool = False) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        "-m",
        "proxy.cli",
        "serve",
        "--cache-dir",
        str(cache),
        "--listen",
        f"127.0.0.1:{free_port()}",
    ]
    if drop_root:  # root without the capabilities that bypass permission bits: as a service user
        args = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_a_bad_cache_directory_is_named_with_its_reason(tmp_path: Path, read_only: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir(mode=0)
    cases = [
        (serve_with_cache(a_file), f"config key [cache] dir: {a_file} is not a directory"),
        (serve_with_cache(a_file / "sub"), f"{a_file}/sub cannot be made: {a_file} is not a directory"),
        (serve_with_cache(read_only), f"{read_only} is read-only for this process and holds no cache"),
        (serve_with_cache(read_only / "sub" / "x"), f"does not exist and cannot be made: {read_only} is not writable"),
        (serve_with_cache(unreadable, drop_root=True), f"{unreadable} is not readable for this process"),
    ]
    for done, needle in cases:
        assert done.returncode == 2 and needle in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "listen" not in done.stderr
    assert list(read_only.iterdir()) == [] and a_file.read_text() == "x"
    done = cli("config", "check", "--config", "/dev/null", env={"PLATPROXY_CACHE__DIR": str(a_file)})
    assert done.returncode == 2 and f"{a_file} is not a directory" in done.stderr


def test_the_banner_comes_only_once_the_port_is_bound(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--cache-dir", str(tmp_path / "c"), "--listen", f"127.0.0.1:{port}", "--upstream",
                   "http://127.0.0.1:1")  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"platproxy serve: cannot listen on 127.0.0.1:{port}: " + done.stderr.split(": ", 2)[2].strip()
    )
    assert "serving" not in done.stderr


def test_values_from_the_environment_are_shown_where_they_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[cache]\ndir = "{tmp_path / "from-file"}"\n')
    env = {"PLATPROXY_CACHE__DIR": str(tmp_path / "from-env")}
    done = cli("config", "check", str(path), env=env)
    assert done.returncode == 0
    assert f'[cache] dir from PLATPROXY_CACHE__DIR, over the file\'s "{tmp_path / "from-file"}"' in done.stderr
    proxy = Platproxy(tmp_path / "from-flag", "http://127.0.0.1:1", extra=["--config", str(path)], log_dir=tmp_path,
                      env=env)  # fmt: skip
    try:
        proxy.start()
        assert "platproxy: [cache] dir from a command-line flag, over the file's" in proxy.log()
    finally:
        proxy.stop()


def test_systemds_cache_directory_is_the_default_and_a_files_dir_beats_it(tmp_path: Path) -> None:
    done = cli("config", "check", env={"CACHE_DIRECTORY": str(tmp_path / "unit")})
    assert 'dir = ""' in done.stdout
    proxy = Platproxy(
        tmp_path / "x", "http://127.0.0.1:1", log_dir=tmp_path, env={"CACHE_DIRECTORY": str(tmp_path / "unit")}
    )
    try:
        proxy.start()  # --cache-dir wins over CACHE_DIRECTORY
        assert f"cache {tmp_path / 'x'}" in proxy.log()
    finally:
        proxy.stop()
    env = {**os.environ, "CACHE_DIRECTORY": str(tmp_path / "unit"), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    with subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--listen", f"127.0.0.1:{port}"],
                          stderr=subprocess.PIPE, text=True, env=env) as proc:  # fmt: skip
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        proc.terminate()
        proc.wait(10)
    assert f"cache {tmp_path / 'unit'}" in banner and (tmp_path / "unit" / "index.db").exists()


def test_shutdown_is_logged_and_sighup_rereads_htpasswd_without_stopping(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt.hashpw(b'a-pass', bcrypt.gensalt(4)).decode()}\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\nhtpasswd = "{htpasswd}"\n')
    proxy = Platproxy(tmp_path / "cache", "http://127.0.0.1:1", extra=["--config", str(config)], log_dir=tmp_path)
    proxy.start()
    basic = {"Authorization": "Basic Ym9iOmItcGFzcw=="}  # bob:b-pass
    try:
        assert request(proxy.port, "GET", "/v2/", headers=basic)[0] == 401
        same_mtime = htpasswd.stat().st_mtime_ns
        htpasswd.write_text(htpasswd.read_text() + f"bob:{bcrypt.hashpw(b'b-pass', bcrypt.gensalt(4)).decode()}\n")
        os.utime(htpasswd, ns=(same_mtime, same_mtime))  # only SIGHUP can tell it changed
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGHUP)
        assert proxy.wait_for_log('"reread": "htpasswd (2 users)"') == 1
        assert request(proxy.port, "GET", "/v2/", headers=basic)[0] == 200
        htpasswd.write_text("not an htpasswd line\n")
        proxy.proc.send_signal(signal.SIGHUP)
        assert proxy.wait_for_log("SIGHUP: htpasswd not reloaded; keeping the current one") == 1
        assert request(proxy.port, "GET", "/v2/", headers=basic)[0] == 200  # the good file still rules
        assert proxy.proc.poll() is None
    finally:
        proxy.stop()
    assert proxy.proc is not None and proxy.proc.returncode == 0
    log = proxy.log()
    assert '"signal": "SIGTERM"' in log and '"event": "stopping"' in log and '"event": "stopped"' in log
    assert log.index("platproxy: serving") < log.index("stopping")
