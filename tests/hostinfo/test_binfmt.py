"""binfmt_misc handlers (pure): the real files Debian's qemu-user-static ships and the kernel's
view of one registered handler, each mapped to the platform it executes; the F flag, disabled
handlers and garbage files (tests/data/binfmt/README.md says where each file comes from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostinfo.binfmt import Handler, HandlerError, emulated, parse_handler

DATA = Path(__file__).parents[1] / "data" / "binfmt"


def load(path: Path) -> Handler:
    return parse_handler(path.name, path.read_text())


@pytest.mark.parametrize(
    ("name", "platform"),
    [("qemu-aarch64", "linux/arm64/v8"), ("qemu-arm", "linux/arm/v7"), ("qemu-riscv64", "linux/riscv64"),
     ("qemu-ppc64le", "linux/ppc64le"), ("qemu-s390x", "linux/s390x"), ("qemu-i386", "linux/386"),
     ("qemu-mips64el", "linux/mips64le")],
)  # fmt: skip
def test_debian_handlers_map_to_their_platforms(name: str, platform: str) -> None:
    handler = load(DATA / "debian" / name)
    assert handler.enabled and "F" in handler.flags and handler.interpreter.startswith("/usr/libexec/qemu-binfmt/")
    [found] = emulated([handler])
    assert (str(found.platform), found.usable) == (platform, True)


def test_the_kernels_view_and_the_package_file_agree() -> None:
    kernel, package = load(DATA / "kernel" / "qemu-aarch64"), load(DATA / "debian" / "qemu-aarch64")
    assert (kernel.magic, kernel.mask, kernel.flags) == (package.magic, package.mask, "PF")
    assert emulated([kernel])[0].platform == emulated([package])[0].platform


def test_disabled_handlers_and_handlers_without_f_are_not_usable() -> None:
    [disabled] = emulated([load(DATA / "kernel" / "qemu-aarch64-disabled")])
    assert not disabled.usable and "disabled" in disabled.reason
    text = (DATA / "kernel" / "qemu-aarch64").read_text().replace("flags: PF", "flags: P")
    [no_f] = emulated([parse_handler("qemu-aarch64", text)])
    assert not no_f.usable and "F flag" in no_f.reason
    [off] = emulated([load(DATA / "kernel" / "qemu-aarch64")], subsystem_enabled=False)
    assert not off.usable and "status" in off.reason


@pytest.mark.parametrize(("name", "needle"), [("notes", "not a binfmt_misc handler"),
                                              ("extension", "file extension"), ("badhex", "not hex")])  # fmt: skip
def test_garbage_is_refused_with_a_reason(name: str, needle: str) -> None:
    with pytest.raises(HandlerError, match=needle):
        load(DATA / "garbage" / name)
