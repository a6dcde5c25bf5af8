"""Config values: each mistake named by its key, defaults that mean what they say, the example file valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config, upstream_from_url

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('listen = "nowhere"', "config key listen: expected HOST:PORT"),
        ('[cache]\ntag_ttl = "soon"', "config key [cache] tag_ttl: expected a duration"),
        ('[limits]\nmax_manifest_size = "big"', "config key [limits] max_manifest_size: expected a size"),
        ('[[upstream]]\nname = "x"\nurl = "ftp://x"', "config key [[upstream]] 0 url"),
        ('[[upstream]]\nname = "x"\nurl = "http://example.com"', "plain http to example.com is refused"),
        ('[platform]\nia32 = "maybe"', "config key [platform] ia32"),
        ("[resolve]\nlist_aware_clients = 3", "config key [resolve] list_aware_clients"),
        ("lisen = 1", "unknown key `lisen` in the top level; did you mean `listen`? (known: listen, loop, upstreams,"),
        ("[cache]\nmax_sise = 1", "unknown key `max_sise` in [cache]; did you mean `max_size`? (known: dir, tag_ttl"),
        ('[[upstream]]\nname = "x"\nurl = "http://127.0.0.1:1"\nuser = "u"', "unknown key `user` in [upstream #1]"),
        ('[store.s3]\nbuckt = "b"', "unknown key `buckt` in [store.s3]; did you mean `bucket`?"),
        ("[cache]\nmax_size = -5", "config key [cache] max_size: -5 is negative: a size is 0 or more"),
        ('[cache]\nmax_size = "-5MiB"', "config key [cache] max_size: expected a size"),
        ("[cache]\ntag_ttl = -1", "config key [cache] tag_ttl: -1 is negative"),
        ('[limits]\nread_timeout = "0s"', "config key [limits] read_timeout: must be more than 0"),
        ("[limits]\nmax_manifest_size = 0", "config key [limits] max_manifest_size: must be more than 0"),
        ("[store.s3]\nlease_ttl = 0", "config key [store.s3] lease_ttl: must be more than 0"),
        (
            '[platform]\noverride = "linux/amd65"',
            "config key [platform] override: unknown architecture 'amd65' in 'linux/amd65' "
            "(did you mean 'linux/amd64'?)",
        ),
        (
            '[platform]\noverride = "linux/amd64/v7"',
            "amd64 has no variant 'v7' in 'linux/amd64/v7' (did you mean 'linux/amd64'?)",
        ),
        (
            '[[clients]]\ncidr = "10.0.0.0/8"\nplatform = "lnux/arm64"',
            "unknown os 'lnux' in 'lnux/arm64' (did you mean 'linux/arm64'?)",
        ),
        (
            '[[upstream]]\nname = "x"\nurl = "http://127.0.0.1:5001/v2/"',
            "config key [[upstream]] 0 url: 'http://127.0.0.1:5001/v2/' has a path; give the registry's root "
            "(http://127.0.0.1:5001) and drop /v2/: platproxy adds it",
        ),
        (
            '[[upstream]]\nname = "x"\nurl = "https://r.example/artifactory/api"',
            "give the registry's root (https://r.example)",
        ),
        (
            '[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "passthrough"\nusername = "u"\npassword = "p"',
            'auth = "passthrough" pulls with each client\'s own credentials: remove username and password',
        ),
        ('[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "client"', "config key [[upstream]] 0 auth"),
        (
            '[auth]\nhtpasswd = "/etc/h"\n[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "passthrough"',
            "a client can send only one",
        ),
        (
            'listen = "0.0.0.0:5000"\n[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth = "passthrough"',
            "upstream x (auth = passthrough) on 0.0.0.0:5000 without [tls] would take passwords in clear",
        ),
        ('[[upstream]]\nname = "x"\nurl = "https://r.example"\nauth_remember = "0s"', "must be more than 0"),
        (
            '[store.s3]\naccess_key = "AKIA"',
            "[store.s3] access_key is set but [store.s3] secret_key is not: set both (either from "
            "PLATPROXY_STORE__S3__SECRET_KEY), or neither to use botocore's chain",
        ),
        ('[store.s3]\nsecret_key = "s"', "[store.s3] secret_key is set but [store.s3] access_key is not"),
        (
            '[store.s3]\nendpoint = "http://rgw.cluster.local:7480"',
            "plain http to rgw.cluster.local is refused for the store; use https, or set "
            "store.s3.insecure_http = true on a trusted network",
        ),
        (
            '[store.s3]\nbucket = "My_Mirror"',
            "config key [store.s3] bucket: 'My_Mirror' is not a bucket name: 3 to 63 characters of lower-case",
        ),
        ('[store.s3]\nprefix = "a b/"', "config key [store.s3] prefix: 'a b/' is not a key prefix"),
        ('[store.s3]\nprefix = "/abs/"', "is not a key prefix"),
        ("not toml [", "not valid TOML"),
        ('default_upstream = "nope"', "default_upstream 'nope' is not the name of an upstream"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert needle in str(info.value)


def test_zero_keeps_its_documented_meaning(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[cache]\ntag_ttl = 0\nmax_size = 0\n")  # always revalidate; no budget
    config = load_config(path, env={})
    assert (config.cache.tag_ttl, config.cache.max_size) == (0, 0)


def test_origins_name_the_variable_that_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cache]\ndir = "/srv/a"\n')
    origins: dict[str, str] = {}
    config = load_config(path, {"listen": "127.0.0.1:6000"}, env={"PLATPROXY_CACHE__DIR": "/srv/b"}, origins=origins)
    assert config.cache.dir == "/srv/b"
    assert origins == {"cache.dir": 'PLATPROXY_CACHE__DIR, over the file\'s "/srv/a"', "listen": "a command-line flag"}


def test_upstream_flag_takes_an_ipv6_address() -> None:
    upstream = upstream_from_url("http://[::1]:5001")
    assert (upstream.name, upstream.url) == ("[::1]:5001", "http://[::1]:5001")
    with pytest.raises(ConfigError, match=r"--upstream http://\[::1\]:5001/v2/: .* drop /v2/"):
        upstream_from_url("http://[::1]:5001/v2/")


def test_config_example_is_valid() -> None:
    config = load_config(Path(__file__).parents[3] / "config.example.toml")
    assert config.listen == "127.0.0.1:5000" and config.upstreams[0].name == "docker.io"


def test_store_settings_an_operator_gets_right_first_time(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[store.s3]\nendpoint = "http://rgw.cluster.local:7480"\ninsecure_http = true\n'
                    'prefix = "platproxy"\nbucket = "registry-mirror"\n')  # fmt: skip
    s3 = load_config(path, env={}).store.s3
    assert s3.prefix == "platproxy/" and s3.endpoint == "http://rgw.cluster.local:7480"
    path.write_text('[store.s3]\naccess_key = "AKIA"\nsecret_key = "s"\nprefix = ""\n')
    assert load_config(path, env={}).store.s3.prefix == ""
