"""Windows ``os.version`` compatibility, compared numerically.

platproxy hosts are not Windows, but a host profile may say it is (a parent mirror resolving
for a Windows fleet), and the choice must still be right.  The rules are containerd's, with
the numeric comparison its string ``Less`` lacks (containerd/containerd#11366):
- an empty version on either side matches (HostProcess images carry none);
- major.minor must be equal;
- a host before Windows Server 2022 (build 20348) needs the exact build;
- a newer host runs images from the previous LTSC (the newest LTSC below its own build; WS2022
  itself, the first one, runs only its own) up to its own build.
"""

from __future__ import annotations

#: LTSC builds with a stable container ABI: Windows Server 2022, Windows Server 2025.
LTSC_BUILDS: tuple[int, ...] = (20348, 26100)


def parse_version(text: str) -> tuple[int, int, int, int] | None:
    """``10.0.17763.5820`` -> (10, 0, 17763, 5820); ``None`` when it is not such a version."""
    parts = text.split(".")
    if len(parts) < 3 or len(parts) > 4 or not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts] + [0] * (4 - len(parts))
    return nums[0], nums[1], nums[2], nums[3]


def windows_verdict(host_version: str, image_version: str) -> str:
    """An empty string when the image runs on the host, else the sentence saying why not."""
    if not host_version or not image_version:
        return ""
    host, image = parse_version(host_version), parse_version(image_version)
    if host is None:
        return f"the host os.version {host_version!r} is not a Windows version number"
    if image is None:
        return f"os.version {image_version!r} is not a Windows version number"
    if host[:2] != image[:2]:
        return f"os.version {image_version} is Windows {image[0]}.{image[1]}, the host is {host[0]}.{host[1]}"
    if host[2] < LTSC_BUILDS[0]:
        if image[2] != host[2]:
            return f"os.version {image_version} needs build {image[2]}; this host runs only its own ({host[2]})"
        return ""
    floor = max((b for b in LTSC_BUILDS if b < host[2]), default=LTSC_BUILDS[0])
    if image[2] > host[2]:
        return f"os.version {image_version} is newer than the host's build {host[2]}"
    if image[2] < floor:
        return (
            f"os.version {image_version} is older than LTSC build {floor}, the oldest this host (build {host[2]}) runs"
        )
    return ""


def windows_closeness(host_version: str, image_version: str) -> tuple[int, ...]:
    """Order among compatible Windows entries: the exact version, then the newest build/UBR."""
    host, image = parse_version(host_version), parse_version(image_version)
    if image is None:
        return (2, 0, 0)
    exact = 0 if host is not None and image == host else 1
    return (exact, -image[2], -image[3])
