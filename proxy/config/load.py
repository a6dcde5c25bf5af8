"""Loading: defaults < the TOML file < ``PLATPROXY_*`` < flags, and the messages for what is wrong."""

from __future__ import annotations

import copy
import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ValidationError,
)

from proxy.config.models import Config
from proxy.config.upstream import UpstreamConfig
from proxy.config.values import ConfigError
from proxy.oci.names import DOCKER_HUB, DOCKER_HUB_ALIASES

ENV_PREFIX = "PLATPROXY_"
SECRET_KEYS = frozenset({"password", "access_key", "secret_key", "peer_secret"})
"""Keys whose values are never printed, wherever they came from (file, environment or flag): the
effective config shows ``***``, a provenance line names the source only, an error names the key."""


def is_secret(dotted: str) -> bool:
    return dotted.rpartition(".")[2] in SECRET_KEYS


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> Config:
    """Defaults < the TOML file < ``PLATPROXY_*`` environment < ``overrides`` (flags).

    Environment keys use ``__`` between levels and list indexes as numbers:
    ``PLATPROXY_CACHE__TAG_TTL=1h``, ``PLATPROXY_UPSTREAMS__0__PASSWORD=...``; values are read
    as JSON when they parse as JSON (``true``, ``3``, ``["a"]``), else as strings.  ``origins``,
    when given, is filled with each dotted key set by the environment or a flag and its source
    (``config check`` and the start-up line show them: a variable in a unit file silently beating
    the file is the classic surprise).
    """
    data: dict[str, Any] = Config().model_dump(mode="json")
    origins = origins if origins is not None else {}
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            file_data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
        if "upstreams" in file_data:  # the model's name: one spelling only, or entries would be dropped
            raise ConfigError(f"config {path}: unknown section [[upstreams]]; did you mean [[upstream]]? "
                              "(one [[upstream]] table per registry)")  # fmt: skip
        if "upstream" in file_data:
            file_data["upstreams"] = file_data.pop("upstream")
        data = _merge(data, copy.deepcopy(file_data))  # the environment's values must not land in file_data
    for key, raw in sorted((env if env is not None else os.environ).items()):
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            dotted = ".".join(key[len(ENV_PREFIX) :].lower().split("__"))
            _set(data, dotted, _env_value(raw), key)
            origins[dotted] = key + _over_the_file(file_data, dotted)
    for dotted, value in (overrides or {}).items():
        _set(data, dotted, value, f"--{dotted.rpartition('.')[2].replace('_', '-')}")
        origins[dotted] = "a command-line flag" + _over_the_file(file_data, dotted)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None


def _over_the_file(file_data: dict[str, Any], dotted: str) -> str:
    value: Any = file_data
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return ""
    return ", over the file's value" if is_secret(dotted) else f", over the file's {json.dumps(value)}"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _set(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    target: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise ConfigError(f"{source}: {'.'.join(parts[:i]) or dotted} has no entry {part}")
            if last:
                target[int(part)] = value
            else:
                target = target[int(part)]
        elif isinstance(target, dict):
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, {})
        else:
            raise ConfigError(f"{source}: {'.'.join(parts[:i])} is not a table")


def _describe(exc: ValidationError, origins: dict[str, str] | None = None) -> str:
    """Every error, one line each (one error: one line), each naming its key as the file spells it."""
    lines = [_describe_one(error, origins or {}) for error in exc.errors()]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)


def _describe_one(error: Any, origins: dict[str, str]) -> str:
    if error["type"] == "extra_forbidden":
        return _unknown_key(error["loc"], origins)
    dotted = ".".join(str(p) for p in error["loc"])
    message = _scrubbed(error["msg"].removeprefix("Value error, "), error.get("input"), dotted)
    origin = next((f" (from {src})" for k, src in origins.items() if dotted == k or dotted.startswith(k + ".")), "")
    return f"config key {file_key(dotted)}{origin}: {message}"


def file_key(dotted: str) -> str:
    """A dotted key as the TOML file spells it: ``upstreams.0.password`` -> ``[[upstream]] 0 password``,
    ``store.s3.bucket`` -> ``[store.s3] bucket``, ``listen`` -> ``listen``; a section alone -> ``[cache]``."""
    if not dotted:
        return "(the top level)"
    parts = dotted.split(".")
    if parts[0] in ARRAYS:
        table = f"[[{FILE_NAMES.get(parts[0], parts[0])}]]"
        index = f" {parts[1]}" if len(parts) > 1 else ""
        rest = ".".join(parts[2:])
        return f"{table}{index}" + (f" {rest}" if rest else "")
    model: type[BaseModel] = Config
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            head = ".".join(parts[:i])
            return f"[{head}] {'.'.join(parts[i:])}" if head else dotted
        model = inner
    return f"[{dotted}]"  # a section itself (an error of the section as a whole)


def _scrubbed(message: str, value: Any, key: str) -> str:
    """An error message without a secret value in it (a validator may quote what it was given)."""
    if is_secret(key) and isinstance(value, str) and value:
        return message.replace(repr(value), "***").replace(value, "***")
    return message


def _unknown_key(loc: tuple[int | str, ...], origins: dict[str, str]) -> str:
    """``unknown key `foo` in [cache] (known: dir, tag_ttl, …)``: the section as the file spells it."""
    model: type[BaseModel] = Config
    section: list[str] = []
    for part in loc[:-1]:
        if isinstance(part, int):
            section[-1] = f"{section[-1]} #{part + 1}"
            continue
        annotation = model.model_fields[part].annotation
        inner = get_args(annotation)[0] if get_origin(annotation) is tuple else annotation
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else model
        section.append(FILE_NAMES.get(part, part))
    where = f"[{'.'.join(section)}]" if section else "the top level"
    dotted = ".".join(str(p) for p in loc)
    origin = next((f" (from {src})" for k, src in origins.items() if dotted == k or dotted.startswith(k + ".")), "")
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"unknown key `{loc[-1]}` in {where}{origin}{hint} (known: {', '.join(model.model_fields)})"


FILE_NAMES = {"upstreams": "upstream"}
"""Sections whose TOML name differs from the model's (``[[upstream]]`` is ``upstreams``)."""
ARRAYS = frozenset({"upstreams", "clients", "policy"})
"""Arrays of tables: ``[[upstream]]``, ``[[clients]]``, ``[[policy]]``."""


def masked(config: Config) -> dict[str, Any]:
    """The effective config as plain data, with every secret replaced by ``***``."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("***" if k in SECRET_KEYS and v else _without_password(v) if k == "proxy" else mask(v))
                    for k, v in value.items()}  # fmt: skip
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    return dict(mask(config.model_dump(mode="json")))


def _without_password(url: str) -> str:
    """A proxy URL with its password, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def upstream_from_url(url: str) -> UpstreamConfig:
    """``--upstream URL``: one upstream named after the URL's host and port (Docker Hub if it is
    Hub; an IPv6 address keeps its brackets, ``[::1]:5001``, as a registry host is written)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        name = DOCKER_HUB if parts.hostname in DOCKER_HUB_ALIASES else host
        return UpstreamConfig(name=name or "-", url=url)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--upstream {_without_userinfo(url)}: {message}") from None
    except ValueError as exc:
        raise ConfigError(f"--upstream {_without_userinfo(url)}: {exc}") from None


def _without_userinfo(url: str) -> str:
    """A URL as it may be printed: whatever stands before an ``@`` in its authority is ``***``."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}{sep}***@{authority.rpartition('@')[2]}{slash}{path}"
