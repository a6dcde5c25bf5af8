"""What a host can run, in order of preference, and the verdict on one candidate.

The preference vector is containerd/platforms' ordering (``compare.go``: the host's own variant
first, then each lower variant of its architecture) made explicit, with moby's rule that an
unlabeled entry counts as the baseline: native first, then lower levels of the same
architecture, then cross-architecture fallbacks (386 on amd64, 32-bit arm on arm64) only where
the host can really execute them (probed, not assumed), always last.
``compare`` turns a candidate platform into a ``Rank`` (its position and a human label) or a
``Rejection`` carrying one sentence, which the resolver shows to users verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostinfo.binfmt import Emulated
from hostinfo.detect import HostDetails
from hostinfo.platform import Platform, normalize
from hostinfo.windows import windows_closeness, windows_verdict


@dataclass(frozen=True)
class Capabilities:
    """Cross-architecture execution the host offers, each with the reason it was decided."""

    ia32: bool = False
    """amd64 host can run 386 binaries (kernel ``CONFIG_IA32_EMULATION``)."""
    aarch32: bool = False
    """arm64 host can run 32-bit arm binaries (AArch32 at EL0 plus ``CONFIG_COMPAT``)."""
    arm64: bool = False
    """arm/v8 userland on an arm64 kernel may run arm64 images (opt-in only)."""
    emulation: bool = False
    """Usable binfmt_misc (QEMU) handlers may run other architectures, ranked after everything
    native (``[platform] emulation = "fallback"``; off by default: never silently)."""
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostProfile:
    """Everything the resolver needs to know about the host."""

    platform: Platform
    """Normalized; ``features`` are the CPU flags, ``os_features`` the host's OS features."""
    details: HostDetails = field(default_factory=HostDetails)
    capabilities: Capabilities = field(default_factory=Capabilities)
    emulated: tuple[Emulated, ...] = ()
    """What binfmt_misc handlers execute (usable or not, with the reason), whatever the policy."""


@dataclass(frozen=True)
class Step:
    """One place in the preference vector."""

    os: str
    architecture: str
    variant: str
    label: str

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Rank:
    """A candidate the host can run: its position in the vector (0 is best) and why."""

    index: int
    label: str
    closeness: tuple[int, ...] = ()
    """Finer order among equal ranks (Windows: exact version, then the newest build)."""


@dataclass(frozen=True)
class Rejection:
    """A candidate the host cannot run, with one sentence saying why."""

    reason: str


#: Image-side CPU feature names to the names /proc/cpuinfo prints.
FEATURE_ALIASES: dict[str, str] = {
    "sse3": "pni",
    "lzcnt": "abm",
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
    "sse4": "sse4_2",
    "avx512": "avx512f",
    "fp16": "fphp",
    "neon": "asimd",
}


EMULATED_VARIANTS = {"arm": ("v7", "v6", "v5"), "arm64": ("v8",)}
"""QEMU's arm emulates every 32-bit level; its aarch64 the v8 baseline images are built for."""


def preference_vector(host: HostProfile) -> list[Step]:
    """The ordered list of platforms this host runs, most preferred first: native, lower levels,
    gated cross-architecture fallbacks, then (only with emulation on) emulated platforms."""
    steps = _native_vector(host)
    if host.capabilities.emulation:
        have = {s.architecture for s in steps}
        for e in host.emulated:
            arch = e.platform.architecture
            if e.usable and arch not in have:
                have.add(arch)
                for variant in EMULATED_VARIANTS.get(arch, (e.platform.variant,)):
                    steps.append(Step(host.platform.os, arch, variant, "emulated"))
    return steps


def _native_vector(host: HostProfile) -> list[Step]:
    p = host.platform
    caps = host.capabilities

    def step(arch: str, variant: str, label: str) -> Step:
        return Step(os=p.os, architecture=arch, variant=variant, label=label)

    if p.architecture == "amd64":
        top = int(p.variant.lstrip("v") or 1)
        steps = [step("amd64", f"v{n}", _level_label(n, top, 1)) for n in range(top, 0, -1)]
        if caps.ia32:
            steps.append(step("386", "", "32-bit compat (IA32)"))
        return steps
    if p.architecture == "arm64":
        levels = _arm64_levels(p.variant)
        steps = [step("arm64", v, _arm64_label(i, len(levels))) for i, v in enumerate(levels)]
        if caps.aarch32:
            steps.append(step("arm", "v8", "32-bit compat (AArch32)"))
            steps += [step("arm", f"v{n}", "32-bit compat, lower level") for n in (7, 6, 5)]
        return steps
    if p.architecture == "arm" and p.variant[1:].isdigit():
        top = int(p.variant[1:])
        steps = [step("arm", f"v{n}", _level_label(n, top, 0)) for n in range(top, 4, -1)]
        if top == 8 and caps.arm64:
            steps.append(step("arm64", "v8", "64-bit (arm64 kernel, opt-in)"))
        return steps or [step("arm", p.variant, "native")]
    gen = _power_generation(host)
    floor = 8 if p.architecture == "ppc64le" else gen
    if p.architecture in ("ppc64le", "ppc64") and gen >= floor > 0:
        tuned = [step(p.architecture, f"power{n}", _level_label(n, gen, 0)) for n in range(gen, floor - 1, -1)]
        return [*tuned, step(p.architecture, "", "baseline")]
    return [step(p.architecture, p.variant, "native")]


def _power_generation(host: HostProfile) -> int:
    """POWER generation from the host details (``power9`` -> 9), 0 when unknown."""
    level = host.details.level
    return int(level[5:]) if level.startswith("power") and level[5:].isdigit() else 0


def _level_label(n: int, top: int, baseline: int) -> str:
    if n == top:
        return "native"
    return "baseline" if n == baseline else "lower level"


def _arm64_levels(variant: str) -> list[str]:
    """containerd's arm64 order: v9.x..v9.1, v9, v8.(x+5)..v8.1, v8; v8.x..v8.1, v8."""
    major, _, minor_s = variant.lstrip("v").partition(".")
    minor = int(minor_s) if minor_s.isdigit() else 0
    if major == "9":
        nine = [f"v9.{m}" for m in range(minor, 0, -1)] + ["v9"]
        return nine + [f"v8.{m}" for m in range(min(minor + 5, 9), 0, -1)] + ["v8"]
    return [f"v8.{m}" for m in range(minor, 0, -1)] + ["v8"]


def _arm64_label(i: int, count: int) -> str:
    if i == 0:
        return "native"
    return "baseline" if i == count - 1 else "lower level"


def compare(host: HostProfile, candidate: Platform) -> Rank | Rejection:
    """Judge one candidate platform against the host: a rank, or a rejection with a sentence."""
    c = normalize(candidate)
    hp = host.platform
    if c.os == "unknown" or c.architecture == "unknown":
        return Rejection(reason=f"{c} marks an attestation or other non-runnable entry")
    if c.os != hp.os:
        return Rejection(reason=f"{c} is built for {c.os}; this host runs {hp.os}")
    vector = preference_vector(host)
    index = next(
        (i for i, s in enumerate(vector) if (s.architecture, s.variant) == (c.architecture, c.variant)),
        None,
    )
    if index is None:
        return Rejection(reason=_why_not_runnable(host, c, vector))
    missing_os = sorted(set(c.os_features) - set(hp.os_features))
    if missing_os:
        return Rejection(reason=f"{c} needs os.features {', '.join(missing_os)}, which this host lacks")
    wanted = {FEATURE_ALIASES.get(f, f) for f in c.features}
    missing = sorted(wanted - set(hp.features))
    if missing:
        return Rejection(reason=f"{c} needs CPU features {', '.join(missing)}, which this host lacks")
    closeness: tuple[int, ...] = ()
    if c.os == "windows":
        verdict = windows_verdict(hp.os_version, c.os_version)
        if verdict:
            return Rejection(reason=f"{c}: {verdict}")
        closeness = windows_closeness(hp.os_version, c.os_version)
    return Rank(index=index, label=vector[index].label, closeness=closeness)


def _why_not_runnable(host: HostProfile, c: Platform, vector: list[Step]) -> str:
    why = _why_not_natively(host, c, vector)
    could = next((e for e in host.emulated if e.usable and e.platform.architecture == c.architecture), None)
    if could is not None and not host.capabilities.emulation:
        why += f'; runnable with emulation = "fallback" (binfmt_misc handler {could.handler})'
    return why


def _why_not_natively(host: HostProfile, c: Platform, vector: list[Step]) -> str:
    hp = host.platform
    runs = ", ".join(str(s) for s in vector)
    if hp.architecture == "arm64" and c.architecture == "arm" and not host.capabilities.aarch32:
        return f"{c} is 32-bit arm and this arm64 host cannot run AArch32 code (aarch32 is off)"
    if hp.architecture == "amd64" and c.architecture == "386" and not host.capabilities.ia32:
        return f"{c} is 32-bit x86 and this amd64 host cannot run IA32 code (ia32 is off)"
    if c.architecture == hp.architecture:
        return (
            f"{c} needs variant {c.variant or '(none)'}, beyond this host's {hp.variant or 'baseline'} (runs: {runs})"
        )
    return f"{c} is not runnable on {hp} (runs: {runs})"
