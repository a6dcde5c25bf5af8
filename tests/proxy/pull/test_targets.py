"""Whose platform a request is resolved for (pure): rules by address, the User-Agent's platform,
else this host; X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
import re

import pytest

from hostinfo import HostProfile, Platform
from proxy.config import ClientRule, ConfigError, load_config
from proxy.pull.targets import Targets, choose, client_address

HOST = HostProfile(platform=Platform.parse("linux/amd64/v3"))
VARIANTS = {"arm": "v7", "arm64": "v8", "amd64": "v1"}
RULES = [(ipaddress.ip_network("10.3.0.0/16"), ClientRule(cidr="10.3.0.0/16", platform="linux/arm/v6")),
         (ipaddress.ip_network("fd00::/8"), ClientRule(cidr="fd00::/8", platform="linux/riscv64"))]  # fmt: skip


def docker(arch: str, os_name: str = "linux") -> str:
    return f"docker/20.10.24 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/{os_name} arch/{arch}"


@pytest.mark.parametrize(
    ("address", "agent", "source", "platform"),
    [
        ("10.3.7.9", docker("arm64"), "rule", ""),  # a rule beats the User-Agent
        ("fd00::1", "", "rule", ""),
        ("192.0.2.1", docker("arm64"), "user-agent", "linux/arm64/v8"),
        ("192.0.2.1", docker("arm"), "user-agent", "linux/arm/v7"),
        ("192.0.2.1", docker("s390x"), "user-agent", "linux/s390x"),
        ("192.0.2.1", docker("aarch64"), "user-agent", "linux/arm64/v8"),  # normalized
        ("192.0.2.1", docker("amd64"), "host", ""),  # this host's arch: its full detected profile
        ("192.0.2.1", docker("amd65"), "host", ""),  # a typo falls through (and is logged)
        ("192.0.2.1", "containerd/1.6.20~ds1", "host", ""),  # names no platform
        ("not-an-ip", docker("arm64"), "user-agent", "linux/arm64/v8"),
    ],
)
def test_choose(address: str, agent: str, source: str, platform: str) -> None:
    choice = choose(address, agent, RULES, HOST, VARIANTS)
    assert (choice.source, choice.platform) == (source, platform)
    assert (choice.rule is not None) == (source == "rule")


def test_a_selector_and_an_index_tool_come_before_rules() -> None:
    choice = choose("10.3.7.9", docker("amd64"), RULES, HOST, VARIANTS, selector="linux/arm64/v8")
    assert (choice.source, choice.platform) == ("selector", "linux/arm64/v8")
    assert (choose("10.3.7.9", "", RULES, HOST, VARIANTS, tool="cosign").source, "tool") == ("tool", "tool")
    assert choose("10.3.7.9", "", RULES, HOST, VARIANTS, selector="all").platform == "all"


@pytest.mark.parametrize(
    ("agent", "accepts_index", "source", "platform"),
    [
        ("cosign/v2.2.3 (linux; amd64) go-containerregistry/v0.19.0", True, "tool", "index"),
        ("buildkit/v0.12.5", True, "tool", "index"),
        ("crane/v0.19.0 go-containerregistry/v0.19.0", True, "tool", "index"),
        ("buildkit/v0.12.5", False, "rule", "linux/arm64/v8"),  # an index only if it can read one
        ("skopeo/1.9.3", True, "rule", "linux/arm64/v8"),  # a pull as often as a copy: resolved
        ("containerd/1.6.20~ds1", True, "rule", "linux/arm64/v8"),
        ("cosigned/1.0", True, "rule", "linux/arm64/v8"),  # a product name, not a prefix
    ],
)
def test_index_tools_get_the_index(agent: str, accepts_index: bool, source: str, platform: str) -> None:
    config = load_config(None, {"clients": [{"cidr": "127.0.0.2/32", "platform": "linux/arm64/v8"}]})
    target = Targets(config, HOST).for_request("127.0.0.2", "", agent, accepts_index=accepts_index)
    assert (target.source, target.platform, target.resolves) == (source, platform, platform != "index")


def test_a_bad_user_agent_platform_says_why() -> None:
    assert "amd65" in choose("192.0.2.1", docker("amd65"), [], HOST, VARIANTS).ignored
    assert choose("192.0.2.1", docker("arm64"), [], HOST, VARIANTS, use_user_agent=False).source == "host"


def test_forwarded_for_counts_only_behind_trusted_proxies() -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/24")]
    assert client_address("10.0.0.5", "10.3.1.1", trusted) == "10.3.1.1"
    assert client_address("10.0.0.5", "6.6.6.6, 10.3.1.1, 10.0.0.7", trusted) == "10.3.1.1"  # nearest untrusted
    assert client_address("192.0.2.9", "10.3.1.1", trusted) == "192.0.2.9"  # from anyone else: ignored
    assert client_address("10.0.0.5", "", trusted) == "10.0.0.5"


def test_targets_keep_the_host_key_for_the_host_and_their_own_otherwise() -> None:
    config = load_config(None, {"clients": [{"cidr": "127.0.0.2/32", "platform": "linux/arm64/v8"}]})
    targets = Targets(config, HOST)
    assert targets.for_request("127.0.0.1", "", docker("amd64")) is targets.host
    rule = targets.for_request("127.0.0.2", "", docker("amd64"))
    assert (rule.source, rule.platform, rule.key) == ("rule", "linux/arm64/v8", "linux/arm64/v8")
    assert targets.for_request("127.0.0.3", "127.0.0.2", "").source == "host"  # no trusted proxies configured


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"clients": [{"cidr": "10.0.0.0/33", "platform": "linux/arm64"}]}, "[[clients]] 0 cidr"),
        ({"clients": [{"cidr": "10.0.0.0/8", "platform": "linux/amd65"}]}, "unknown architecture"),
        ({"clients": [{"cidr": "10.0.0.0/8", "platform": "linux/amd64/v7"}]}, "amd64 has no variant 'v7'"),
        ({"clients": [{"cidr": "10.0.0.0/8", "platform": "lnux/arm64"}]}, "unknown os 'lnux'"),
        ({"resolve.default_variants": {"arm": "v9"}}, "[resolve] default_variants"),
        ({"resolve.trusted_proxies": ["nope"]}, "[resolve] trusted_proxies"),
        ({"resolve.index_tools": ["cosign/v2"]}, "[resolve] index_tools"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_key(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(None, overrides)


def test_the_record_key_is_the_whole_target_features_included() -> None:
    from hostinfo.probe import host_profile
    from proxy.pull.targets import profile_key

    plain = host_profile("linux/amd64", (), "no", "no")
    avx = host_profile("linux/amd64", ("avx512f",), "no", "no")
    assert profile_key(plain) == "linux/amd64/v1"  # no features: the key names the platform alone
    assert profile_key(avx) != profile_key(plain) and profile_key(avx).startswith("linux/amd64/v1+features:")
    assert profile_key(host_profile("linux/amd64", ("sse4_2", "avx512f"), "no", "no")) == profile_key(
        host_profile("linux/amd64", ("avx512f", "sse4_2", "avx512f"), "no", "no")
    )  # a set: order and repeats do not matter


@pytest.mark.parametrize(
    ("agent", "accepts_index", "node", "source", "platform"),
    [
        ("containerd/1.6.20~ds1", True, "", "unknown client", "all"),  # nothing places it: it chooses
        ("containerd/1.6.20~ds1", False, "", "guess", ""),  # cannot read an index: a logged guess
        (docker("amd64"), True, "", "user-agent", "linux/amd64/v1"),  # never this host's own level
        (docker("arm64"), True, "", "user-agent", "linux/arm64/v8"),
        ("containerd/1.6.20~ds1", True, "linux/arm/v7", "node", "linux/arm/v7"),  # the node header
        (docker("amd64"), True, "linux/arm64/v8", "node", "linux/arm64/v8"),  # ahead of the User-Agent
    ],
)
def test_a_remote_node_is_never_given_this_hosts_platform_by_guess(
    agent: str, accepts_index: bool, node: str, source: str, platform: str
) -> None:
    choice = choose("192.0.2.9", agent, [], HOST, VARIANTS, remote=True, accepts_index=accepts_index, node=node)
    assert (choice.source, choice.platform) == (source, platform)
    # the same from this host (a sidecar's engine): its own profile, as before
    if not node and agent.startswith("containerd"):
        assert choose("127.0.0.1", agent, [], HOST, VARIANTS, remote=False).source == "host"


def test_host_addresses_decide_who_is_this_host_and_the_node_header_is_checked() -> None:
    from proxy.errors import InvalidHeader

    config = load_config(None, {"resolve.host_addresses": ["127.0.0.9/32"]})
    targets = Targets(config, HOST)
    assert targets.for_request("127.0.0.9", "", "containerd/1.6", accepts_index=True).source == "host"
    assert targets.for_request("127.0.0.1", "", "containerd/1.6", accepts_index=True).source == "unknown client"
    node = targets.for_request("127.0.0.1", "", "containerd/1.6", accepts_index=True, node="linux/arm64")
    assert (node.source, str(node.profile.platform)) == ("node", "linux/arm64/v8")
    with pytest.raises(InvalidHeader, match="X-Platproxy-Platform"):
        targets.for_request("127.0.0.1", "", "containerd/1.6", node="linux/amd65")
    defaults = Targets(load_config(None), HOST)  # loopback and this machine's own addresses
    assert defaults.for_request("127.0.0.1", "", "containerd/1.6", accepts_index=True).source == "host"


def test_a_registration_places_its_address_after_rules_and_the_header_and_is_forgotten_when_it_changes() -> None:
    assert choose("10.3.7.9", docker("amd64"), RULES, HOST, VARIANTS, registered="linux/arm64/v8").source == "rule"
    placed = choose("192.0.2.9", docker("amd64"), RULES, HOST, VARIANTS, registered="linux/arm/v6", remote=True)
    assert (placed.source, placed.platform) == ("registration", "linux/arm/v6")  # ahead of the User-Agent
    declared = choose("192.0.2.9", "", [], HOST, VARIANTS, node="linux/arm/v7", registered="linux/arm/v6")
    assert (declared.source, declared.platform) == ("node", "linux/arm/v7")
    registered: dict[str, str] = {}
    targets = Targets(load_config(None, {"resolve.host_addresses": ["127.0.0.9/32"]}), HOST,
                      lambda address: registered.get(address, ""))  # fmt: skip
    assert targets.for_request("127.0.0.1", "", "containerd/1.6", accepts_index=True).source == "unknown client"
    registered["127.0.0.1"] = "linux/arm64/v8"
    targets.forget()  # what Registrations.on_change does
    target = targets.for_request("127.0.0.1", "", "containerd/1.6", accepts_index=True)
    assert (target.source, str(target.profile.platform)) == ("registration", "linux/arm64/v8")
    assert targets.for_request("127.0.0.2", "", "containerd/1.6", accepts_index=True).source == "unknown client"
