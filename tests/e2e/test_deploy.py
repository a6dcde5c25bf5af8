"""The packaging files hold together: the DaemonSet's config is valid, the probes reach it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from proxy.config import load_config

DEPLOY = Path(__file__).parents[2] / "deploy"


def daemonset_config(tmp_path: Path, name: str = "daemonset.yaml") -> Path:
    text = (DEPLOY / name).read_text()
    block = text.split("config.toml: |\n", 1)[1].split("\n---", 1)[0]
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(block))
    return path


def test_daemonset_config_is_valid_and_loopback_only(tmp_path: Path) -> None:
    config = load_config(daemonset_config(tmp_path), env={})
    assert config.listen == "127.0.0.1:5000" and config.metrics.listen == "127.0.0.1:5001"
    assert config.cache.max_size == 20 * 2**30
    assert {u.name for u in config.upstreams} == {"docker.io", "ghcr.io", "registry.k8s.io"}
    text = (DEPLOY / "daemonset.yaml").read_text()
    assert "hostNetwork: true" in text and "port: 5001, path: /readyz" in text


def test_unit_and_image_run_the_documented_command() -> None:
    unit = (DEPLOY / "platproxy.service").read_text()
    assert "ExecStart=/usr/local/bin/platproxy serve --config /etc/platproxy/config.toml" in unit
    assert "DynamicUser=yes" in unit and "CacheDirectory=platproxy" in unit
    image = (DEPLOY / "Containerfile").read_text()
    assert "USER 10001" in image and 'ENTRYPOINT ["platproxy"]' in image


def test_mirror_tier_config_is_valid_and_takes_its_keys_from_the_environment(tmp_path: Path) -> None:
    path = daemonset_config(tmp_path, "mirror-tier.yaml")
    env = {"PLATPROXY_STORE__S3__ACCESS_KEY": "AK", "PLATPROXY_STORE__S3__SECRET_KEY": "SK"}
    config = load_config(path, env=env)
    assert config.store.backend == "s3" and config.store.s3.bucket == "registry-mirror"
    assert (config.store.s3.access_key, config.store.s3.secret_key) == ("AK", "SK")
    assert config.listen == "0.0.0.0:5000"
    text = (DEPLOY / "mirror-tier.yaml").read_text()
    for variable in env:  # the names the Deployment sets are the names the config reads
        assert f"name: {variable}" in text
    assert "replicas: 3" in text and "path: /readyz" in text
    tls = Path(config.tls.cert).parent  # TLS from cert-manager's Secret, mounted where the config reads it
    assert config.tls.key.startswith(str(tls)) and f"mountPath: {tls}" in text
    assert "secretName: platproxy-mirror-tls" in text and text.count("platproxy-mirror-tls") == 2
    assert "ARG EXTRAS" in (DEPLOY / "Containerfile").read_text()
