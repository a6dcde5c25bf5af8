"""JSON from another party (an upstream's manifest, a token answer, a bucket's record), parsed
with bounded nesting.

The standard library's parser recurses once per level of nesting: a four-megabyte manifest of
``[[[[…`` is a ``RecursionError``, which is no ``ValueError`` and escaped every caller as a 500
with a traceback.  ``loads`` turns it into the ``ValueError`` every caller already handles as
"not valid JSON".  No document a registry serves is nested more than a dozen levels.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: bytes | str) -> Any:
    """``json.loads``; a document nested too deeply to parse is a ``ValueError`` like any bad JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None
