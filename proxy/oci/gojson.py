"""JSON written byte for byte as Go's ``encoding/json`` writes it.

Schema 1 manifests are hashed over their JSON text, and the v1 IDs inside them over other JSON
text, so a schema 1 manifest built here has the digest Distribution's has for the same image
only if every byte matches: Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\u…``,
writes other non-ASCII characters as they are, and formats times as RFC 3339 with the
fractional seconds' trailing zeros cut.  ``compact`` is Go's ``json.Compact`` with HTML
escaping, which is what marshalling a ``json.RawMessage`` does to the original text.
"""

from __future__ import annotations

import re
from typing import Any

_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
ZERO_TIME = "0001-01-01T00:00:00Z"


def string(text: str) -> str:
    """A JSON string literal as Go writes it."""
    out = ['"']
    for ch in text:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch in _HTML:
            out.append(_HTML[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dumps(value: Any, indent: str = "", prefix: str = "", _depth: int = 0) -> str:
    """``json.Marshal`` (no ``indent``) or ``json.MarshalIndent(value, prefix, indent)``.

    Dicts keep their insertion order (a Go struct's field order); ``RawJSON`` is written as is.
    """
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, dict):
        items = [string(str(k)) + (": " if indent else ":") + dumps(v, indent, prefix, _depth + 1)
                 for k, v in value.items()]  # fmt: skip
        return _wrap("{", "}", items, indent, prefix, _depth)
    if isinstance(value, list | tuple):
        return _wrap("[", "]", [dumps(v, indent, prefix, _depth + 1) for v in value], indent, prefix, _depth)
    raise TypeError(f"cannot write {type(value).__name__} as Go JSON")


def _wrap(open_: str, close: str, items: list[str], indent: str, prefix: str, depth: int) -> str:
    if not items:
        return open_ + close
    if not indent:
        return open_ + ",".join(items) + close
    inner = "\n" + prefix + indent * (depth + 1)
    return open_ + inner + ("," + inner).join(items) + "\n" + prefix + indent * depth + close


class RawJSON:
    """JSON text written verbatim (Go's ``json.RawMessage`` after ``compact``)."""

    def __init__(self, text: str) -> None:
        self.text = text


def compact(text: str) -> str:
    """Go's ``json.Compact`` with HTML escaping: whitespace outside strings dropped, nothing else."""
    out = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            out.append(_HTML.get(ch, ch))
        elif ch in " \t\r\n":
            continue
        else:
            in_string = ch == '"'
            out.append(ch)
    return "".join(out)


def time_text(value: Any) -> str:
    """A JSON time as Go re-marshals a parsed ``time.Time`` (RFC 3339, nanoseconds trimmed)."""
    if not isinstance(value, str) or not value:
        return ZERO_TIME
    m = _TIME.match(value)
    if m is None:
        return value
    fraction = (m[2] or "").rstrip("0")
    zone = "Z" if m[3] in ("Z", "+00:00", "-00:00") else m[3]
    return m[1] + ("." + fraction if fraction else "") + zone
