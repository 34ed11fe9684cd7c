"""Run untrusted model-written Python against assert tests, in a contained child process.

Why the verdict can be trusted: for a test of the form `assert <expr> <op> <literal>` the child only
ever sees `<expr>`; it sends back the value it computed and this (parent) process compares it with the
literal. Code that subverts the harness can write anything to the result channel, but it cannot claim
a pass without producing the right value, because it never learns what the right value is. Tests of
any other form fall back to a pass/fail bit from the child, which such code could forge; the shipped
codegen data uses only the first form.

Containment, in layers (PEP 578 is explicit that audit hooks alone are not a sandbox):
- a fresh `python -I -S` in a new session (process group) with a temporary working directory, a
  minimal environment, rlimits (address space, CPU, file size, processes) and a wall-clock kill;
- an audit hook installed before the solution runs that ends the process on network, process,
  FFI/dlopen and introspection escapes and on file writes outside the working directory;
- `unshare -rn` (an empty network namespace) when the host allows it, so the kernel refuses
  network access too. The hook is enough on its own where `unshare` is missing.
A violation is reported twice: a `V` line on the channel and the exit status `VIOLATION_EXIT`, which
the solution cannot undo once the hook has called `os._exit`.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import math
import operator
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

VIOLATION_EXIT = 86  # exit status the audit hook uses; no other exit path of the harness uses it
FILE_SIZE_LIMIT = 1 << 20  # bytes per file the child may write (RLIMIT_FSIZE); also caps its channel
OPEN_FILES_LIMIT = 64
MAX_VALUE_CHARS = 64_000  # longest repr of a test value the child reports
STDERR_TAIL_CHARS = 2_000

# Runs in the child as `python -I -S -c _HARNESS`. The payload (solution, test expressions, working
# directory, channel fd) arrives on stdin, so nothing about the run is on the command line.
_HARNESS = r"""
import builtins
import json
import os
import posix
import sys

VIOLATION_EXIT = 86
MAX_VALUE_CHARS = 64_000


def make_audit_hook(root, channel):
    # The hook must keep its judgement after the solution has rebound builtins or patched stdlib
    # modules, so it calls only what is bound into its closure here, before the solution runs, plus
    # methods of exact built-in types (which cannot be patched). Nothing outside this closure refers
    # to the hook, so the solution cannot reach it to change it.
    _type, _str, _bytes, _int, _repr = type, str, bytes, int, repr
    _stat, _write, _exit = os.stat, os.write, os._exit
    deny_events = frozenset({
        "os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.kill",
        "os.killpg", "subprocess.Popen", "os.startfile",
        "os.symlink", "os.link", "os.chdir", "os.fchdir", "os.chroot",  # keep path checks lexical
        "os.chmod", "os.lchmod", "os.chown", "os.lchown", "os.chflags", "os.lchflags",
        "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames",
        "sys._current_exceptions", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "resource.setrlimit", "resource.prlimit", "cpython.PyInterpreterState_New",
        "sqlite3.enable_load_extension", "sqlite3.load_extension", "os.mkfifo", "os.mknod",
    })
    deny_prefixes = ("socket.", "ctypes.", "urllib.", "http.", "ftplib.", "smtplib.", "poplib.",
                     "imaplib.", "nntplib.", "telnetlib.", "webbrowser.", "syslog.", "winreg.", "_winapi.")
    # Modules whose C code does what the events above guard without raising those events
    # (_posixsubprocess forks and execs, _ctypes calls anything, sub-interpreters start hook-free).
    deny_modules = frozenset({
        "ctypes", "_ctypes", "cffi", "_cffi_backend", "subprocess", "_posixsubprocess",
        "multiprocessing", "_multiprocessing", "_posixshmem", "signal", "_signal", "pty",
        "_xxsubinterpreters", "_xxinterpchannels", "_testcapi", "_testinternalcapi", "_dbm", "_gdbm",
    })
    # event -> (argument positions holding paths, positions holding dir_fd)
    path_events = {
        "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
        "os.rename": ((0, 1), (2, 3)), "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()),
        "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "sqlite3.connect": ((0,), ()),
    }
    devices_ok = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    s_ifmt, s_ifdir, s_ifchr, s_ifblk = 0o170000, 0o040000, 0o020000, 0o060000

    def deny(what):
        # Report, then end the process: raising would let the solution catch it and carry on.
        _write(channel, b"V " + what.encode("utf-8", "replace")[:300] + b"\n")
        _exit(VIOLATION_EXIT)

    def resolve(path):
        # Lexical resolution is sound here because the solution can create no links and cannot chdir.
        if _type(path) is _bytes:
            path = path.decode("utf-8", "surrogateescape")
        elif _type(path) is not _str:
            return None  # a PathLike could answer differently to the hook and to the open itself
        if not path.startswith("/"):
            path = root + "/" + path
        parts = [part for part in path.split("/") if part and part != "."]
        return None if ".." in parts else "/" + "/".join(parts)

    def inside(path):
        return path == root or path.startswith(root + "/")

    def describe(path):
        return _repr(path)[:200] if _type(path) is _str or _type(path) is _bytes else "a non-str path"

    def check_open(path, mode, flags):
        if _type(path) is _int:
            return None  # a descriptor the process already holds
        resolved = resolve(path)
        if resolved is None:
            return "open of " + describe(path)
        try:
            kind = _stat(resolved).st_mode & s_ifmt
        except (OSError, ValueError):
            kind = 0  # does not exist yet
        if (kind == s_ifchr or kind == s_ifblk) and resolved not in devices_ok:
            return "open of device " + describe(resolved)
        if kind == s_ifdir and not inside(resolved):
            return "open of directory " + describe(resolved)  # its fd would make dir_fd escapes
        writing = _type(flags) is _int and flags & write_flags
        if _type(mode) is _str:
            writing = writing or "w" in mode or "a" in mode or "x" in mode or "+" in mode
        if writing and not inside(resolved):
            return "write outside the sandbox: " + describe(resolved)
        return None

    def hook(event, args):
        if event in deny_events or event.startswith(deny_prefixes):
            deny(event)
        elif event == "import":
            # A str subclass could override split(); the base method on an exact copy cannot lie.
            name = _str.__str__(args[0])
            for part in name.split("."):
                if part in deny_modules:
                    deny("import " + name)
        elif event == "open":
            reason = check_open(args[0], args[1], args[2])
            if reason is not None:
                deny(reason)
        elif event in path_events:
            paths, dir_fds = path_events[event]
            for i in dir_fds:
                if not (args[i] is None or (_type(args[i]) is _int and args[i] == -1)):
                    deny(event + " with dir_fd")
            for i in paths:
                if event == "os.truncate" and _type(args[i]) is _int:
                    continue  # truncating needs a descriptor opened for writing, checked at open
                resolved = resolve(args[i])
                if resolved is None or not inside(resolved) or resolved.startswith(root + "/file:"):
                    deny(event + " of " + describe(args[i]))

    return hook


def plain(value, depth=0):
    # Only plain built-in values travel back: an object with a forged __eq__ cannot, and the parent
    # compares with real built-ins. Subclasses (namedtuple, Counter, IntEnum) reduce to their base.
    if depth > 100:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        base = next(t for t in (list, tuple, set, frozenset) if isinstance(value, t))
        return base(plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in dict(value).items()}
    raise TypeError(f"{kind.__name__} is not a plain value")


def exception_name(exc):
    try:
        name = type(exc).__name__
    except BaseException:
        return "error"
    return name[:80] if type(name) is str else "error"


def main():
    payload = json.loads(sys.stdin.buffer.read())
    write, exit_now, channel = os.write, os._exit, payload["channel"]

    def emit(*fields):
        line = " ".join(fields).replace("\n", " ").replace("\r", " ")
        write(channel, line.encode("utf-8", "replace") + b"\n")

    tests = []  # (kind, code object or None when the test itself does not compile)
    for test in payload["tests"]:
        try:
            mode = "eval" if test["kind"] == "value" else "exec"
            tests.append((test["kind"], compile(test["source"], "<test>", mode)))
        except (SyntaxError, ValueError):
            tests.append((test["kind"], None))
    # _signal is preloaded by the interpreter; once it is out of sys.modules a re-import raises an
    # audit event the hook denies, so the solution cannot set a handler that would interrupt the hook.
    sys.modules.pop("_signal", None)
    # mkfifo and mknod create files without raising an audit event; route them to one the hook denies.
    for name in ("mkfifo", "mknod"):

        def blocked(*args, _event="os." + name, **kwargs):
            sys.audit(_event)

        setattr(os, name, blocked)
        setattr(posix, name, blocked)
    sys.addaudithook(make_audit_hook(payload["workdir"], channel))

    try:
        code = compile(payload["code"], "solution.py", "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        emit("S", exception_name(exc), "line", str(getattr(exc, "lineno", "?")))
        emit("D")
        exit_now(0)
    # Not "__main__": a completion's `if __name__ == "__main__":` demo must not run.
    namespace = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(code, namespace)
    except BaseException as exc:
        emit("I", exception_name(exc))
        emit("D")
        exit_now(0)

    for i, (kind, test) in enumerate(tests):
        try:
            if test is None:
                raise SyntaxError("test does not compile")
            if kind == "value":
                text = repr(plain(eval(test, namespace)))
                if len(text) > MAX_VALUE_CHARS:
                    raise ValueError("value too large")
                emit("R", str(i), text)
            else:
                exec(test, namespace)
                emit("P", str(i))
        except BaseException as exc:
            emit("F", str(i), exception_name(exc))
    emit("D")
    exit_now(0)  # skip interpreter teardown: the solution's atexit, __del__ and threads get no turn


main()
"""


@dataclass
class SandboxResult:
    """How a solution fared. `passed` counts only tests whose verdict arrived before the child ended."""

    passed: int
    total: int
    syntax_ok: bool
    timed_out: bool
    violations: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class _Check:
    """One test as the parent sees it: what the child evaluates and how the parent judges the value."""

    kind: Literal["value", "assert"]  # value: the child returns what `source` evaluates to; assert: P/F
    source: str
    judge: Callable[[Any], bool] | None = None


_OPERATORS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


def literal(node: ast.AST) -> Any:
    """A plain value from a literal expression; like `ast.literal_eval` but also reads `frozenset({...})`."""
    if isinstance(node, ast.Expression):
        return literal(node.body)
    if isinstance(node, ast.Constant) and node.value is not Ellipsis:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = literal(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [literal(item) for item in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {literal(k): literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords
    if is_call and node.func.id in ("set", "frozenset") and len(node.args) <= 1:
        make = set if node.func.id == "set" else frozenset
        return make(literal(node.args[0]) if node.args else ())
    raise ValueError(f"not a literal: {ast.dump(node)[:80]}")


def _check_of(test: str) -> _Check:
    """Split `assert <expr> <op> <literal>` so that only `<expr>` goes to the child."""
    try:
        module = ast.parse(test)
    except (SyntaxError, ValueError):
        return _Check("assert", test)
    stmt = module.body[0] if len(module.body) == 1 else None
    compare = stmt.test if isinstance(stmt, ast.Assert) else None
    if isinstance(compare, ast.Compare) and len(compare.ops) == 1 and type(compare.ops[0]) in _OPERATORS:
        op = _OPERATORS[type(compare.ops[0])]
        left, right = compare.left, compare.comparators[0]
        for expr, lit, literal_first in ((left, right, False), (right, left, True)):
            try:
                expected = literal(lit)
            except (ValueError, TypeError):
                continue
            if literal_first:
                return _Check("value", ast.unparse(expr), lambda got, e=expected: bool(op(e, got)))
            return _Check("value", ast.unparse(expr), lambda got, e=expected: bool(op(got, e)))
    return _Check("assert", test)


def is_verifiable_test(test: str) -> bool:
    """Whether the child's verdict on `test` cannot be forged: `assert <expr> <op> <literal>`."""
    return _check_of(test).kind == "value"


def _judge(check: _Check, text: str) -> bool:
    try:
        got = literal(ast.parse(text, mode="eval"))
        return check.judge is not None and check.judge(got)
    except Exception:  # a malformed or hostile value line is a failed test, never our crash
        return False


def _limit_child(memory_mb: int, cpu_s: int) -> None:
    """preexec_fn: limits set between fork and exec, so they bind `unshare` and the interpreter too."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # exec is allowed, fork/threads are not (non-root)
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@functools.cache
def _working_unshare() -> str | None:
    """Path of an `unshare` that can make a network namespace here (needs user namespaces), or None."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    try:
        probe = subprocess.run(
            [exe, "-rn", "true"],
            capture_output=True,
            timeout=10,
            preexec_fn=functools.partial(_limit_child, 512, 5),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if probe.returncode == 0 else None


def network_namespace_available() -> bool:
    """Whether runs get the kernel's no-network namespace on top of the audit hook; probed once."""
    return _working_unshare() is not None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_tests(
    code: str,
    tests: list[str],
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    *,
    network_namespace: bool = True,
) -> SandboxResult:
    """Run `code`, then each assert in `tests` separately, in one contained child process.

    `timeout_s` bounds the whole run (start-up, import, all tests). `network_namespace=False` skips
    `unshare` even where it works, leaving the audit hook alone in charge of the network.
    """
    checks = [_check_of(test) for test in tests]
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="srl-sandbox-"))
    command = [sys.executable, "-I", "-S", "-c", _HARNESS]
    unshare = _working_unshare() if network_namespace else None
    if unshare is not None:
        command = [unshare, "-rn", *command]
    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as channel,
        tempfile.TemporaryFile() as stderr,
    ):
        payload = {
            "code": code,
            "tests": [{"kind": check.kind, "source": check.source} for check in checks],
            "workdir": workdir,
            "channel": channel.fileno(),
        }
        stdin.write(json.dumps(payload).encode())
        stdin.seek(0)
        timed_out = False
        try:
            proc = subprocess.Popen(
                command,
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=workdir,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir},
                pass_fds=(channel.fileno(),),
                start_new_session=True,  # its own process group, so a timeout kills every descendant
                preexec_fn=functools.partial(_limit_child, memory_mb, math.ceil(timeout_s) + 1),
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                returncode = proc.wait()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        channel.seek(0)
        lines = channel.read(2 * FILE_SIZE_LIMIT).decode("utf-8", "replace").splitlines()
        stderr.seek(0, os.SEEK_END)
        stderr.seek(max(0, stderr.tell() - STDERR_TAIL_CHARS))
        stderr_tail = stderr.read().decode("utf-8", "replace").strip()
    return _read_channel(
        lines, checks, returncode, timed_out or returncode == -signal.SIGXCPU, timeout_s, stderr_tail
    )


def _read_channel(
    lines: list[str],
    checks: list[_Check],
    returncode: int,
    timed_out: bool,
    timeout_s: float,
    stderr_tail: str,
) -> SandboxResult:
    """Turn the child's report into a result, treating anything the harness would not write as tampering."""
    passed = [False] * len(checks)
    seen: set[int] = set()
    violations: list[str] = []
    syntax_ok, done, tampered, error = True, False, False, None
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "V":
            violations.append(rest)
        elif kind == "S" and error is None:
            syntax_ok, error = False, f"syntax error: {rest}"
        elif kind == "I" and error is None:
            error = f"solution raised {rest} when run"
        elif kind in ("R", "P", "F"):
            index_text, _, value = rest.partition(" ")
            plausible = index_text.isascii() and index_text.isdigit() and len(index_text) < 10
            index = int(index_text) if plausible else -1
            if index >= len(checks) or index < 0 or index in seen:
                tampered = True
                continue
            seen.add(index)
            check = checks[index]
            if kind == "R":
                tampered |= check.kind != "value"
                passed[index] = check.kind == "value" and _judge(check, value)
            elif kind == "P":
                tampered |= check.kind != "assert"
                passed[index] = check.kind == "assert"
        elif kind == "D" and not done:
            done = True
        else:
            tampered = True
    if returncode == VIOLATION_EXIT and not violations:
        violations.append("sandbox policy violation (report lost)")
    if tampered:
        violations.append("unexpected data on the result channel")
    if timed_out:
        error = f"timed out after {timeout_s:g}s"
    elif not done and not violations and error is None:
        error = f"sandbox exited before finishing (status {returncode})"
        if stderr_tail:
            error += f": {stderr_tail}"
    return SandboxResult(
        passed=sum(passed),
        total=len(checks),
        syntax_ok=syntax_ok,
        timed_out=timed_out,
        violations=violations,
        error=error,
    )
