"""The host report: one JSON-able dict that says what the host is, why, and what it runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from hostinfo.binfmt import Emulated
from hostinfo.compat import Capabilities, HostProfile, preference_vector
from hostinfo.detect import Detection


def profile_of(detection: Detection, capabilities: Capabilities, emulated: tuple[Emulated, ...] = ()) -> HostProfile:
    return HostProfile(platform=detection.platform, details=detection.details, capabilities=capabilities,
                       emulated=emulated)  # fmt: skip


def host_report(
    detection: Detection, capabilities: Capabilities, emulated: tuple[Emulated, ...] = ()
) -> dict[str, Any]:
    """``{"os", "architecture", "variant", "features", "os_version", "sources", "runs", "emulated", ...}``."""
    p = detection.platform
    profile = profile_of(detection, capabilities, emulated)
    return {
        "platform": str(p),
        "os": p.os,
        "architecture": p.architecture,
        "variant": p.variant,
        "os_version": p.os_version,
        "features": list(p.features),
        "details": dataclasses.asdict(detection.details),
        "capabilities": {
            "ia32": capabilities.ia32,
            "aarch32": capabilities.aarch32,
            "arm64": capabilities.arm64,
            "emulation": capabilities.emulation,
        },
        "sources": {**detection.sources, **capabilities.sources},
        "runs": [{"platform": str(s), "label": s.label} for s in preference_vector(profile)],
        "emulated": [e.to_json() for e in emulated],
    }
