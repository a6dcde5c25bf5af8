"""Loading a config: every problem at once, each named as the file spells it; one spelling of
each section."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, file_key, load_config


@pytest.mark.parametrize(
    ("dotted", "spelled"),
    [("listen", "listen"), ("cache.max_size", "[cache] max_size"), ("store.s3.bucket", "[store.s3] bucket"),
     ("store.s3", "[store.s3]"), ("upstreams.0.password", "[[upstream]] 0 password"),
     ("clients.2.cidr", "[[clients]] 2 cidr"), ("resolve.default_variants.arm", "[resolve] default_variants.arm")],
)  # fmt: skip
def test_keys_are_named_as_the_file_spells_them(dotted: str, spelled: str) -> None:
    assert file_key(dotted) == spelled


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('listen = "nope"\n[cache]\nmax_size = "lots"\n[[upstream]]\nname = "x"\nurl = "ftp://x"\n'
                    '[store.s3]\nbucket = "B"\n')  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    lines = str(info.value).splitlines()
    assert lines[0] == "4 problems:"
    named = [line.split(":")[0].strip().removeprefix("config key ") for line in lines[1:]]
    assert named == ["listen", "[[upstream]] 0 url", "[cache] max_size", "[store.s3] bucket"]


def test_the_plural_section_is_refused_with_the_right_spelling(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[upstream]]\nname = "a.example"\nurl = "https://a.example"\n'
                    '[[upstreams]]\nname = "b.example"\nurl = "https://b.example"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"unknown section \[\[upstreams\]\]; did you mean \[\[upstream\]\]\?"):
        load_config(path, env={})


def test_config_check_prints_the_file_a_user_would_write(tmp_path: Path) -> None:
    """TOML that loads back as the same configuration, secrets masked."""
    import tomllib

    from proxy.cli.config import as_toml
    from proxy.config import masked

    path = tmp_path / "c.toml"
    path.write_text(
        '[[upstream]]\nname = "r.example"\nurl = "https://r.example"\nusername = "u"\npassword = "hunter2"\n'
        '[cache]\nmax_size = "20GiB"\n[[clients]]\ncidr = "10.3.0.0/16"\nplatform = "linux/arm/v6"\n'
    )
    config = load_config(path, env={})
    text = as_toml(masked(config))
    assert "hunter2" not in text and 'password = "***"' in text and "[[upstream]]" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    reloaded = load_config(again, env={})
    assert reloaded.model_copy(update={"upstreams": config.upstreams}) == config
    assert tomllib.loads(text)["upstream"][0]["password"] == "***"
