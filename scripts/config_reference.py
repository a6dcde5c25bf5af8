"""Prints docs/configuration.md's table of every key: its name as the file spells it, its default,
and when a change takes effect.  ``tests/test_docs.py`` checks the table is this output.

    .venv/bin/python scripts/config_reference.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.config import ClientRule, Config, PolicyRule, UpstreamConfig, file_key

RELOADED = {"auth.htpasswd": "on change and SIGHUP", "tls.cert": "on change and SIGHUP",
            "tls.key": "on change and SIGHUP"}  # fmt: skip
ARRAYS = {"upstreams": UpstreamConfig, "clients": ClientRule, "policy": PolicyRule}


def shown(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, tuple):
        value = list(value)
    text = json.dumps(value, default=str)
    return "(required)" if text == '"PydanticUndefined"' else text.replace("|", "\\|")


def rows(model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += rows(annotation, dotted + ".")
        elif dotted in ARRAYS:
            out += rows(ARRAYS[dotted], dotted + ".N.")
        else:
            default = "(required)" if field.is_required() else shown(field.default)
            key = file_key(dotted).replace(" N ", " ")
            out.append(f"| `{key}` | `{default}` | {RELOADED.get(dotted, 'restart')} |")
    return out


def table() -> str:
    return "\n".join(["| key | default | a change takes effect |", "| --- | --- | --- |", *rows(Config, "")]) + "\n"


if __name__ == "__main__":
    print(table(), end="")
