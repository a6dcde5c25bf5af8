"""hostinfo: what this host is, and what it can run.

One small module per idea, pure functions deciding and I/O at the edge (``probe``):
``platform`` (the model, parse/format), ``normalize`` (aliases), ``cpuinfo`` (parsing),
``x86``/``arm``/``details`` (variant and finer facts), ``detect`` (combining them),
``compat`` (the preference vector and ``compare``), ``windows`` (os.version rules),
``known`` (every table of real platform values), ``addresses`` (this machine's own network
addresses, read at the edge), ``validate`` (warnings about descriptor
platforms that are not real ones) and ``binfmt`` (what QEMU user-emulation handlers
execute); ``report`` and ``cli`` print it all.

May import: nothing of proxy.
"""

from hostinfo.compat import Capabilities, HostProfile, Rank, Rejection, compare, preference_vector
from hostinfo.detect import Detection, HostDetails, HostInfoError, detect
from hostinfo.platform import Platform, PlatformError, format_platform, normalize

__all__ = [
    "Capabilities", "Detection", "HostDetails", "HostInfoError", "HostProfile", "Platform",
    "PlatformError", "Rank", "Rejection", "compare", "detect", "format_platform", "normalize",
    "preference_vector",
]  # fmt: skip
