"""Run untrusted model-written Python against assert tests, in a contained child process.

Why the verdict can be trusted: for a test of the form `assert <expr> <op> <literal>` the child only
ever sees `<expr>`; it sends back the value it computed and this (parent) process compares it with the
literal. Code that subverts the harness can write anything to the result channel, but it cannot claim
a pass without producing the right value, because it never learns what the right value is. Tests of
any other form fall back to a pass/fail bit from the child, which such code could forge; the shipped
codegen data uses only the first form.

Containment, in layers (PEP 578 is explicit that audit hooks alone are not a sandbox):
- outside: bubblewrap (own namespaces, uid 65534, no capabilities, only the system libraries and the
  standard library visible, a size-limited tmpfs working directory; `sandbox_isolation.py`); without
  it a run refuses, unless the caller named a weaker layer (`unshare -rn`, or the hook alone);
- a fresh `python -I -S` in a new session (process group) with a temporary working directory, a
  minimal environment, rlimits (address space, CPU, file size, processes) and a wall-clock kill;
- an audit hook installed before the solution runs that ends the process on network, process,
  FFI/dlopen and introspection escapes, on extension modules from anywhere but the standard library,
  on SQLite (ATTACH reaches any file, unaudited), on reads outside its working directory and the
  standard library, on writes outside its working directory, and past `MAX_FILES` files there.
Whatever the child does, the parent gets a result: cleanup of its working directory cannot raise.
A violation is reported twice: a `V` line on the channel and the exit status `VIOLATION_EXIT`, which
the solution cannot undo once the hook has called `os._exit`.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import logging
import math
import operator
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srl_rlvr.tasks.sandbox_isolation import (
    NOBODY,
    Isolation,
    bubblewrap_available,
    bubblewrap_command,
    choose,
    interpreter,
    unshare_available,
)

log = logging.getLogger(__name__)

VIOLATION_EXIT = 86  # exit status the audit hook uses; no other exit path of the harness uses it
FILE_SIZE_LIMIT = 1 << 20  # bytes per file the child may write (RLIMIT_FSIZE); also caps its channel
OPEN_FILES_LIMIT = 64
MAX_FILES = 64  # files and folders the child may create: with FILE_SIZE_LIMIT, at most 64 MB of disk
MAX_VALUE_CHARS = 64_000  # longest repr of a test value the child reports
STDERR_TAIL_CHARS = 2_000

# The child runs `sandbox_harness.py` as `python -I -S <path>` (-I: the script folder is not put on
# sys.path). The payload (solution, test expressions, working directory, channel fd) arrives on stdin,
# so nothing about the run is on the command line.
HARNESS = Path(__file__).with_name("sandbox_harness.py")


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


def _limit_child(memory_mb: int, cpu_s: int, drop: Callable[[], None] | None) -> None:
    """preexec_fn: limits set between fork and exec, so they bind the isolation layer and the
    interpreter too; then the uid drop, if any (after it, no limit could be raised again)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if drop is not None:
        drop()
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # binds a non-root uid: no fork, no threads


def network_namespace_available() -> bool:
    """Whether runs get the kernel's no-network namespace (bubblewrap's or unshare's); probed once."""
    return bubblewrap_available() or unshare_available()


def remove_tree(path: str) -> None:
    """Delete a working directory whatever the child left in it, never raising: shutil.rmtree recurses
    (a tree 1,100 folders deep raised RecursionError in the parent), so `rm -rf` takes over."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except Exception as e:  # cleanup must never fail the reward computation
        log.debug("rmtree of %s failed (%s); using rm -rf", path, type(e).__name__)
    if os.path.lexists(path):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["rm", "-rf", "--", path], capture_output=True, timeout=60)
    if os.path.lexists(path):
        log.warning("could not remove the sandbox working directory %s", path)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_tests(
    code: str,
    tests: list[str],
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    *,
    isolation: Isolation = "bubblewrap",
) -> SandboxResult:
    """Run `code`, then each assert in `tests` separately, in one contained child process.

    `timeout_s` bounds the whole run (start-up, import, all tests). `isolation` picks the outer layer
    (`sandbox_isolation.choose`): bubblewrap, or SandboxUnavailable where it cannot run; 'namespace'
    and 'hook' are the weaker layers a user must name to get.
    """
    checks = [_check_of(test) for test in tests]
    layer, drop = choose(isolation, HARNESS)
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="srl-sandbox-"))
    if layer == "bubblewrap":
        command = bubblewrap_command(HARNESS, workdir)
    else:
        command = [interpreter(), "-I", "-S", str(HARNESS)]
        if layer == "namespace":
            command = [shutil.which("unshare") or "unshare", "-rn", *command]
        if drop is not None:
            os.chown(workdir, NOBODY, NOBODY)
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
            "max_files": MAX_FILES,
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
                preexec_fn=functools.partial(_limit_child, memory_mb, math.ceil(timeout_s) + 1, drop),
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                returncode = proc.wait()
        finally:
            remove_tree(workdir)
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
