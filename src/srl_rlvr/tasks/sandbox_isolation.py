"""The sandbox's outer layer: what a child running candidate code can see, and who it runs as.

The audit hook inside the child (`sandbox_harness.py`) is a policy, not a wall (PEP 578 says so), so
the default layer is bubblewrap: the child runs in its own mount, PID, IPC, network and user
namespaces as uid/gid 65534 with every capability dropped, and sees only read-only binds of the
system libraries and of this interpreter's standard library (its site-packages masked: installed
packages, ours and our tasks' test data included, are not there), the harness, and a working
directory that is a size-limited tmpfs of its own (nothing it writes reaches the host's disk, nothing
outlives it). The sandbox fails closed: where bubblewrap cannot run, a run refuses with
`SandboxUnavailable` unless the caller named a weaker layer: 'namespace' (`unshare -rn`: no network)
or 'hook' (the audit hook and rlimits alone), each started as uid 65534 when we are root and the
interpreter is readable by that uid, with a one-line warning of what they leave open.
`bwrap` is a Debian/Ubuntu package (`apt-get install bubblewrap`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from srl_rlvr.errors import UserError

log = logging.getLogger(__name__)

NOBODY = 65534  # uid and gid the child runs as: owns no file on the host
HARNESS_INSIDE = "/sandbox/harness.py"
WORKDIR_BYTES = 64 << 20  # the bubblewrap working directory's tmpfs size: room for any honest solution
Isolation = Literal["bubblewrap", "namespace", "hook"]


class SandboxUnavailable(UserError):
    """The isolation layer asked for cannot run on this machine: candidate code is not run at all."""


def interpreter() -> str:
    """The real interpreter binary (a venv's `python` is a link to it)."""
    return os.path.realpath(sys.executable)


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    dirs = {paths["purelib"], paths["platlib"], *site.getsitepackages(), site.getusersitepackages()}
    return sorted(d for d in dirs if d and os.path.isdir(d))


def _system_binds() -> list[str]:
    """bwrap arguments for /usr, the root-level lib and bin folders (links on merged-/usr systems)
    and the interpreter's prefix, read-only."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    for hidden in _site_dirs():  # installed packages stay out of sight
        args += ["--tmpfs", hidden]
    return args


def bubblewrap_command(harness: Path, workdir: str) -> list[str]:
    """The command that runs the harness under bubblewrap (see module docstring)."""
    return [
        shutil.which("bwrap") or "bwrap",
        *_system_binds(),
        "--ro-bind", str(harness), HARNESS_INSIDE,
        "--size", str(WORKDIR_BYTES), "--tmpfs", workdir,
        "--chdir", workdir,
        "--dev", "/dev",
        "--proc", "/proc",
        "--unshare-all",
        "--unshare-user",
        "--uid", str(NOBODY),
        "--gid", str(NOBODY),
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--new-session",
        interpreter(), "-I", "-S", HARNESS_INSIDE,
    ]  # fmt: skip


@functools.cache
def bubblewrap_available() -> bool:
    """Whether bwrap exists and can build the sandbox here (it needs user namespaces); probed once."""
    if shutil.which("bwrap") is None:
        return False
    probe = [*bubblewrap_command(Path(__file__), "/tmp")[:-4], interpreter(), "-I", "-S", "-c", "pass"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def unshare_available() -> bool:
    """Whether `unshare -rn` can give the child an empty network namespace here; probed once."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _readable_by_anyone(path: str) -> bool:
    """Whether a process of another uid can reach and read `path` (every folder above it searchable)."""
    current = Path(path)
    try:
        if not current.stat().st_mode & stat.S_IROTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in current.parents)
    except OSError:
        return False


def can_drop_to_nobody(harness: Path) -> bool:
    """Whether the child can start as uid 65534: we are root, and it could read the interpreter,
    its standard library and the harness."""
    stdlib = sysconfig.get_paths()["stdlib"]
    return os.geteuid() == 0 and all(map(_readable_by_anyone, (interpreter(), stdlib, str(harness))))


def drop_to_nobody() -> None:
    """preexec_fn step: become uid/gid 65534 with no supplementary groups (run as root only)."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def choose(requested: Isolation, harness: Path) -> tuple[str, Callable[[], None] | None]:
    """The layer a run gets, as asked, and a preexec step (the uid drop) or None. Nothing falls back:
    a layer this machine cannot give raises SandboxUnavailable."""
    if requested == "bubblewrap":
        if not bubblewrap_available():
            raise SandboxUnavailable(
                "running model-written code needs bubblewrap, which cannot run here (apt-get install "
                "bubblewrap); to accept weaker isolation name it: task.options.isolation: namespace or hook"
            )
        return "bubblewrap", None
    if requested == "namespace" and not unshare_available():
        raise SandboxUnavailable(
            "sandbox isolation 'namespace' needs `unshare -rn`, which cannot run here; install bubblewrap "
            "or name 'hook'"
        )
    if requested not in ("namespace", "hook"):
        raise SandboxUnavailable(f"unknown sandbox isolation {requested!r}: bubblewrap, namespace or hook")
    return requested, drop_to_nobody if can_drop_to_nobody(harness) else None


def strongest_available() -> Isolation:
    """The strongest layer this machine gives: for tests and diagnostics, never a silent fallback."""
    if bubblewrap_available():
        return "bubblewrap"
    return "namespace" if unshare_available() else "hook"


def weaker_layer_warning(layer: Isolation, harness: Path) -> str:
    """One line saying what a weaker layer leaves open, for whoever configured it to log."""
    gaps = ["candidate code can read any file this process can"]
    if layer == "hook":
        gaps.append("the network is cut by the audit hook alone")
    if os.geteuid() == 0 and not can_drop_to_nobody(harness):
        gaps.append("it runs as root: the interpreter is not readable by an unprivileged uid")
    return f"code sandbox on the weaker {layer!r} layer, as configured: {'; '.join(gaps)}; install bubblewrap"
