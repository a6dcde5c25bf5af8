"""Configuration: pydantic models, loaded from TOML, overridden by command-line flags.

Embedded defaults make ``platproxy serve`` useful with no file at all: listen on
127.0.0.1:5000, mirror Docker Hub, cache under the user's cache directory.  A bad value is one
readable message naming the key (``ConfigError``), never a traceback.  One module per idea:
``values`` (durations, sizes, addresses, real platforms), ``upstream`` (``[[upstream]]``),
``store`` (``[store]``), ``models`` (the other sections and ``Config``), ``load`` (precedence,
the environment, the messages); the names below are the ones the rest of platproxy uses.

May import: hostinfo, proxy.oci, proxy.sizes.
"""

from proxy.config.load import ENV_PREFIX, SECRET_KEYS, file_key, load_config, masked, upstream_from_url
from proxy.config.models import (
    INDEX_TOOLS,
    AuthConfig,
    CacheConfig,
    Capability,
    ClientRule,
    CompatConfig,
    Config,
    LimitsConfig,
    MetricsConfig,
    PlatformConfig,
    PolicyRule,
    ResolveConfig,
    TlsConfig,
)
from proxy.config.store import S3Config, StoreConfig
from proxy.config.upstream import UpstreamConfig
from proxy.config.values import ConfigError, check_platform, is_loopback, parse_duration, parse_size

__all__ = [
    "ENV_PREFIX",
    "INDEX_TOOLS",
    "SECRET_KEYS",
    "AuthConfig",
    "CacheConfig",
    "Capability",
    "ClientRule",
    "CompatConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "MetricsConfig",
    "PlatformConfig",
    "PolicyRule",
    "ResolveConfig",
    "S3Config",
    "StoreConfig",
    "TlsConfig",
    "UpstreamConfig",
    "check_platform",
    "file_key",
    "is_loopback",
    "load_config",
    "masked",
    "parse_duration",
    "parse_size",
    "upstream_from_url",
]  # fmt: skip
