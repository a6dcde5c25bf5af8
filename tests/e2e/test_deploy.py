"""Every file in deploy/ works as written: the embedded configs pass ``platproxy config check``,
the YAMLs parse and point at what they mount, the unit verifies and scores as hardened, the
image's command parses, the client snippets are those of docs/clients.md (the clients themselves
run them in test_clients)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli.main import build_parser
from proxy.config import load_config
from tests.conftest import Seeded
from tests.registry import Platproxy, cli, request
from tests.rgw import Rgw
from tests.tlsfiles import TestCA

Start = Callable[..., Platproxy]

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def embedded_config(name: str, tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    """The ConfigMap's config.toml of ``name``, written out (paths that only exist in a cluster replaced)."""
    (config_map,) = [d for d in documents(name) if d["kind"] == "ConfigMap"]
    text = config_map["data"]["config.toml"]
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def container(name: str, kind: str) -> dict[str, Any]:
    (workload,) = [d for d in documents(name) if d["kind"] == kind]
    spec = workload["spec"]["template"]["spec"]
    first: dict[str, Any] = spec["containers"][0]
    first["_volumes"] = spec.get("volumes", [])
    return first


def test_daemonset_config_passes_config_check_and_stays_on_loopback(tmp_path: Path) -> None:
    path = embedded_config("daemonset.yaml", tmp_path, {"/var/cache/platproxy": str(tmp_path / "cache")})
    done = cli("config", "check", str(path))
    assert done.returncode == 0, done.stderr
    assert " from " not in done.stderr, done.stderr  # nothing from the environment overrides the file
    config = load_config(path, env={})
    assert config.listen == "127.0.0.1:5000" and config.metrics.listen == "127.0.0.1:5001"
    assert config.cache.max_size == 20 * 2**30
    assert {u.name for u in config.upstreams} == {"docker.io", "ghcr.io", "registry.k8s.io"}
    pod = container("daemonset.yaml", "DaemonSet")
    assert pod["args"] == ["serve", "--config", "/etc/platproxy/config.toml"]
    assert not any(e["name"].startswith("PLATPROXY_") for e in pod.get("env") or [])
    mounts = {m["name"]: m["mountPath"] for m in pod["volumeMounts"]}
    assert mounts["cache"] == "/var/cache/platproxy"  # the dir the file names
    assert pod["readinessProbe"]["httpGet"] == {"host": "127.0.0.1", "port": 5001, "path": "/readyz"}


def test_the_daemonsets_node_setup_writes_what_its_node_check_reads(tmp_path: Path) -> None:
    """The init container's ``node setup``, run as written on a node root whose containerd config
    names ``config_path``; the node-check container's readiness command reads the same places."""
    (daemonset,) = [d for d in documents("daemonset.yaml") if d["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    (setup,) = [c for c in spec["initContainers"] if c["name"] == "node-setup"]
    (checker,) = [c for c in spec["containers"] if c["name"] == "node-check"]
    host = tmp_path / "host"
    (host / "etc/containerd").mkdir(parents=True)
    (host / "etc/containerd/config.toml").write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/hosts.d"\n'
    )
    args = [a.replace("/host", str(host)) for a in setup["args"]]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    # the image has no containerd binary: its config file, read directly, names the same directory
    again = cli(*args, env={"PATH": str(tmp_path / "no-such-dir")})
    assert again.returncode == 0 and again.stdout.startswith("nothing to change"), again.stdout + again.stderr
    for registry in ("docker.io", "ghcr.io", "registry.k8s.io"):
        hosts = (host / "etc/containerd/hosts.d" / registry / "hosts.toml").read_text()
        assert '[host."http://127.0.0.1:5000"]' in hosts and "X-Platproxy-Platform" in hosts
    record = json.loads((host / "var/lib/platproxy/node-setup.json").read_text())
    assert record["setup"]["runtimes"] == ["containerd"] and not record["setup"]["registered"]
    mounted = {m["mountPath"] for m in setup["volumeMounts"]}
    assert {"/host/etc", "/host/var/lib/platproxy"} <= mounted  # every path it wrote is the host's
    command = checker["readinessProbe"]["exec"]["command"]
    assert command[0] == "platproxy"
    args = build_parser(command[1:]).parse_args(command[1:])
    assert (args.node_command, str(args.root), args.containerd_config) == (
        "check",
        "/host",
        "/host/etc/containerd/config.toml",
    )
    wanted = {"/host/etc", "/host/var/lib/platproxy", args.containerd_address}
    assert {m["mountPath"] for m in checker["volumeMounts"]} >= wanted


def test_mirror_tier_config_passes_config_check_with_its_environment(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    pair = ca.issue("tier")
    path = embedded_config("mirror-tier.yaml", tmp_path, {
        "/etc/platproxy/tls/tls.crt": str(pair.cert), "/etc/platproxy/tls/tls.key": str(pair.key),
        "/var/cache/platproxy": str(tmp_path / "cache"),
    })  # fmt: skip
    pod = container("mirror-tier.yaml", "Deployment")
    values = {"POD_IP": "10.1.2.3"}  # what Kubernetes gives, then $(POD_IP) expanded as it does
    for e in pod["env"]:
        if "value" in e:
            values[e["name"]] = e["value"].replace("$(POD_IP)", values["POD_IP"])
        elif "secretKeyRef" in e["valueFrom"]:
            values[e["name"]] = "from-the-secret-0123"
    env = {k: v for k, v in values.items() if k.startswith("PLATPROXY_")}
    assert set(env) == {"PLATPROXY_STORE__S3__ACCESS_KEY", "PLATPROXY_STORE__S3__SECRET_KEY",
                        "PLATPROXY_STORE__S3__PEER_SECRET", "PLATPROXY_STORE__S3__PEER_URL"}  # fmt: skip
    done = cli("config", "check", str(path), env=env)
    assert done.returncode == 0, done.stderr
    config = load_config(path, env=env)
    assert config.store.backend == "s3" and config.store.s3.bucket == "registry-mirror"
    assert config.listen == "0.0.0.0:5000" and config.tls.cert == str(pair.cert)
    mounts = {m["name"]: m["mountPath"] for m in pod["volumeMounts"]}
    assert mounts["tls"] == "/etc/platproxy/tls" and mounts["cache"] == "/var/cache/platproxy"
    (secret,) = [v["secret"]["secretName"] for v in pod["_volumes"] if v["name"] == "tls"]
    (certificate,) = [d for d in documents("mirror-tier.yaml") if d["kind"] == "Certificate"]
    assert certificate["spec"]["secretName"] == secret
    assert pod["readinessProbe"]["httpGet"] == {"port": 5001, "path": "/readyz"}
    assert config.store.s3.max_size == 500 * 2**30 and config.store.s3.max_age == 30 * 86400
    assert config.store.s3.advertised_peer() == "http://10.1.2.3:5002"  # each replica's own address
    assert {p["containerPort"] for p in pod["ports"]} == {5000, 5001, 5002}
    (service,) = [d for d in documents("mirror-tier.yaml") if d["kind"] == "Service"]
    assert [p["port"] for p in service["spec"]["ports"]] == [5000]  # the peer port is not the clients'
    # The nightly collection runs `cache gc` on the same config, with the same credentials.
    (cron,) = [d for d in documents("mirror-tier.yaml") if d["kind"] == "CronJob"]
    job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (gc,) = job["containers"]
    assert gc["args"] == ["cache", "gc", "--config", "/etc/platproxy/config.toml"]
    assert {e["name"] for e in gc["env"]} == {"PLATPROXY_STORE__S3__ACCESS_KEY", "PLATPROXY_STORE__S3__SECRET_KEY"}
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert [v["configMap"]["name"] for v in job["volumes"]] == [pod["_volumes"][1]["configMap"]["name"]]


def test_the_mirror_tiers_child_example_passes_config_check(tmp_path: Path) -> None:
    text = (DEPLOY / "mirror-tier.yaml").read_text()
    block = re.search(r"^#   \[\[upstream\]\]\n(?:^#   .*\n)+", text, re.MULTILINE)
    assert block is not None
    child = "".join(line[4:] + "\n" for line in block.group(0).splitlines())
    ca = TestCA(tmp_path / "ca")
    path = tmp_path / "child.toml"
    path.write_text(child.replace("/etc/platproxy/mirror-ca.crt", str(ca.path)))
    done = cli("config", "check", "--json", str(path), env={"PLATPROXY_CACHE__DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    upstream = json.loads(done.stdout)["upstreams"][0]
    assert upstream["parent"] is True and upstream["url"].startswith("https://")
    path.write_text(child.replace("https://", "http://").replace("/etc/platproxy/mirror-ca.crt", str(ca.path)))
    refused = cli("config", "check", str(path))
    assert refused.returncode == 2 and "insecure_http = true" in refused.stderr  # what the comment says to add
    path.write_text(path.read_text() + "insecure_http = true\n")
    assert cli("config", "check", str(path)).returncode == 0


def test_the_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze must be installed (scripts/test.sh installs systemd)"
    text = (DEPLOY / "platproxy.service").read_text()
    assert "ExecStart=/opt/platproxy/bin/platproxy serve --config /etc/platproxy/config.toml" in text
    assert "python3 -m venv /opt/platproxy && /opt/platproxy/bin/pip install ." in text  # PEP 668 systems allow it
    assert (
        "Documentation=file:/usr/share/doc/platproxy/README.md" in text
        and "install -D -m 0644 README.md /usr/share/doc/platproxy/README.md" in text
    )
    assert "PLATPROXY_" not in text and "CacheDirectory=platproxy" in text
    # the 32-bit probes must keep working inside the sandbox: no native-only system call filter
    assert "\nSystemCallArchitectures=" not in text
    unit = tmp_path / "platproxy.service"
    unit.write_text(text.replace("/opt/platproxy/bin/platproxy", str(Path(sys.executable).parent / "platproxy")))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
    score = re.search(r"Overall exposure level for platproxy\.service: (\d+\.\d)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score.group(1)) <= 3.5


def test_every_image_deploy_names_is_the_one_the_containerfile_says_how_to_build_and_push() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    built = set(re.findall(r"-t (registry\.example\.com/platproxy:[\w.-]+)", text))
    named = {c["image"] for name in ("daemonset.yaml", "mirror-tier.yaml") for d in documents(name)
             for c in _containers(d)}  # fmt: skip
    assert named and named <= built, (named, built)


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
    return [*template.get("containers", []), *template.get("initContainers", [])]


def test_the_images_command_parses_and_leaves_the_cache_dir_to_the_config() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert entrypoint == ["platproxy"]
    args = build_parser(command).parse_args(command)
    assert args.command == "serve" and args.config is None
    assert args.listen == "0.0.0.0:5000"  # -p 5000:5000 reaches it; 127.0.0.1 would be the container's own
    assert (
        "USER 10001" in text and "ENV XDG_CACHE_HOME=/var/cache" in text and 'VOLUME ["/var/cache/platproxy"]' in text
    )
    assert not re.search(r"^ENV PLATPROXY_", text, re.MULTILINE)
    assert "ARG EXTRAS" in text and "linux/amd64,linux/arm64,linux/arm/v7" in text


@pytest.mark.parametrize("name", ["hosts.toml", "registries.conf", "daemon.json"])
def test_client_snippets_parse_and_are_the_readmes(name: str) -> None:
    text = (DEPLOY / "clients" / name).read_text()
    json.loads(text) if name.endswith(".json") else tomllib.loads(text)
    assert text in (ROOT / "docs" / "clients.md").read_text()


def test_every_file_in_deploy_is_checked_here() -> None:
    checked = {"daemonset.yaml", "mirror-tier.yaml", "platproxy.service", "Containerfile", "grafana-dashboard.json",
               "clients/hosts.toml", "clients/registries.conf", "clients/daemon.json"}  # fmt: skip
    present = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    assert present <= checked, present - checked


def test_every_dashboard_query_names_a_metric_platproxy_exports(seeded: Seeded, platproxy: Start) -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries.append(variables["instance"]["query"]["query"])
    for panel in dashboard["panels"]:  # every panel asks the chosen data source
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    assert request(proxy.port, "GET", "/v2/library/multi/manifests/1")[0] == 200
    status, _, body = request(proxy.port, "GET", "/metrics")
    assert status == 200
    exported = set()
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            exported |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
        elif line and not line.startswith("#"):
            exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    named = {m for q in queries for m in re.findall(r"\bplatproxy_[a-z_]+", q)}
    assert named - exported == set()
    # what an operator watches is all there
    for metric in ("platproxy_cache_outcomes_total", "platproxy_bytes_served_total", "platproxy_bytes_fetched_total",
                   "platproxy_coalesced_waiters_total", "platproxy_stale_serves_total", "platproxy_resolutions_total",
                   "platproxy_fills_in_flight", "platproxy_evictions_total", "platproxy_store_requests_total",
                   "platproxy_request_seconds_bucket"):  # fmt: skip
        assert metric in named, metric


def test_the_wheel_builds_installs_into_an_empty_venv_and_runs(tmp_path: Path) -> None:
    """What deploy/platproxy.service tells a user to do, from a copy of the repository's files."""
    import zipfile

    from tests.registry import free_port, wait_http

    source = tmp_path / "src"
    junk = (".venv", ".git", "build", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*junk))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("platproxy-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"proxy", "hostinfo"} <= tops and "tests" not in tops and "bench" not in tops
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True,
                               text=True, timeout=600, check=False)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    version = subprocess.run([str(venv / "bin" / "platproxy"), "--version"], capture_output=True, text=True,
                             timeout=60, check=True)  # fmt: skip
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.stdout.strip() == f"platproxy {expected}"
    port = free_port()
    serve = subprocess.Popen([str(venv / "bin" / "platproxy"), "serve", "--listen", f"127.0.0.1:{port}", "--cache-dir",
                              str(tmp_path / "cache")], stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_http(port, proc=serve)
        status, _, page = request(port, "GET", "/fleet")  # the page ships inside the wheel
        assert status == 200 and b"platproxy fleet" in page
    finally:
        serve.terminate()
        assert serve.wait(30) == 0


def test_the_nightly_collection_runs_as_the_cronjob_runs_it(rgw: Rgw, tmp_path: Path) -> None:
    """The CronJob's command, with the tier's config and exactly the environment the CronJob
    gives it (the S3 keys, no peer secret), against a real bucket."""
    from tests.rgw import ACCESS_KEY, SECRET_KEY, bucket

    name = bucket(rgw)
    ca = TestCA(tmp_path / "ca")
    pair = ca.issue("tier")
    path = embedded_config("mirror-tier.yaml", tmp_path, {
        "/etc/platproxy/tls/tls.crt": str(pair.cert), "/etc/platproxy/tls/tls.key": str(pair.key),
        "/var/cache/platproxy": str(tmp_path / "cache"), "https://rgw.storage.svc": rgw.endpoints[0],
        '"registry-mirror"': f'"{name}"',
    })  # fmt: skip
    (cron,) = [d for d in documents("mirror-tier.yaml") if d["kind"] == "CronJob"]
    (gc,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    secrets = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY}
    env = {e["name"]: secrets[e["valueFrom"]["secretKeyRef"]["key"]] for e in gc["env"]}
    args = [str(path) if a == "/etc/platproxy/config.toml" else a for a in gc["args"]]
    done = cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    # and serve, with that environment alone, says what it lacks
    refused = cli("config", "check", str(path), env=env)
    assert refused.returncode == 2 and "peer_secret" in refused.stderr
