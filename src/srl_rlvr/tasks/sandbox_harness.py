"""The child side of the codegen sandbox: install the audit hook, run the solution, report per test.

Run by `sandbox.py` as `python -I -S <this file>` (never imported): it must work with only the
standard library and must bind everything it trusts before the untrusted solution runs.
"""

import builtins
import json
import os
import posix
import sys
import sysconfig

VIOLATION_EXIT = 86
MAX_VALUE_CHARS = 64_000


def make_audit_hook(root, channel, readable, hidden, max_files):
    # The hook must keep its judgement after the solution has rebound builtins or patched stdlib
    # modules, so it calls only what is bound into its closure here, before the solution runs, plus
    # methods of exact built-in types (which cannot be patched). Nothing outside this closure refers
    # to the hook, so the solution cannot reach it to change it.
    _type, _str, _bytes, _int, _repr = type, str, bytes, int, repr
    _stat, _write, _exit = os.stat, os.write, os._exit
    deny_events = frozenset(
        {
            "os.system",
            "os.exec",
            "os.fork",
            "os.forkpty",
            "os.posix_spawn",
            "os.spawn",
            "os.kill",
            "os.killpg",
            "subprocess.Popen",
            "os.startfile",
            "os.symlink",
            "os.link",
            "os.chdir",
            "os.fchdir",
            "os.chroot",  # keep path checks lexical
            "os.chmod",
            "os.lchmod",
            "os.chown",
            "os.lchown",
            "os.chflags",
            "os.lchflags",
            "sys.addaudithook",
            "sys.settrace",
            "sys.setprofile",
            "sys._current_frames",
            "sys._current_exceptions",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "resource.setrlimit",
            "resource.prlimit",
            "cpython.PyInterpreterState_New",
            "sqlite3.enable_load_extension",
            "sqlite3.load_extension",
            "os.mkfifo",
            "os.mknod",
        }
    )
    deny_prefixes = (
        "socket.",
        "ctypes.",
        "urllib.",
        "http.",
        "ftplib.",
        "smtplib.",
        "poplib.",
        "imaplib.",
        "nntplib.",
        "telnetlib.",
        "webbrowser.",
        "syslog.",
        "winreg.",
        "_winapi.",
    )
    # Modules whose C code does what the events above guard without raising those events
    # (_posixsubprocess forks and execs, _ctypes calls anything, sub-interpreters start hook-free).
    deny_modules = frozenset(
        {
            "ctypes",
            "_ctypes",
            "cffi",
            "_cffi_backend",
            "subprocess",
            "_posixsubprocess",
            "multiprocessing",
            "_multiprocessing",
            "_posixshmem",
            "signal",
            "_signal",
            "pty",
            "_xxsubinterpreters",
            "_xxinterpchannels",
            "_testcapi",
            "_testinternalcapi",
            "_dbm",
            "_gdbm",
            # SQLite opens any file its SQL names (ATTACH DATABASE, VACUUM INTO) with no audit event
            "_sqlite3",
        }
    )
    # event -> (argument positions holding paths, positions holding dir_fd)
    path_events = {
        "os.remove": ((0,), (1,)),
        "os.rmdir": ((0,), (1,)),
        "os.mkdir": ((0,), (2,)),
        "os.rename": ((0, 1), (2, 3)),
        "os.utime": ((0,), (3,)),
        "os.truncate": ((0,), ()),
        "os.setxattr": ((0,), ()),
        "os.removexattr": ((0,), ()),
        "sqlite3.connect": ((0,), ()),
    }
    devices_ok = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    s_ifmt, s_ifdir, s_ifchr, s_ifblk = 0o170000, 0o040000, 0o020000, 0o060000

    created = [0]  # files and folders made in the working directory (a list: the closure mutates it)

    def count_created():
        created[0] += 1
        if created[0] > max_files:
            deny("more than " + _str(max_files) + " files created in the working directory")

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

    def under(path, folders):
        # A loop, not any(): the solution can rebind builtins, and the hook must not call them.
        for folder in folders:  # noqa: SIM110
            if path == folder or path.startswith(folder + "/"):
                return True
        return False

    def may_read(path):
        # Its own folder and the standard library; never installed packages (where a task's test
        # data lives) nor anything else on the host.
        return inside(path) or (under(path, readable) and not under(path, hidden)) or path in devices_ok

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
        if (kind in (s_ifchr, s_ifblk)) and resolved not in devices_ok:
            return "open of device " + describe(resolved)
        if kind == s_ifdir and not inside(resolved):
            return "open of directory " + describe(resolved)  # its fd would make dir_fd escapes
        writing = _type(flags) is _int and flags & write_flags
        if _type(mode) is _str:
            writing = writing or "w" in mode or "a" in mode or "x" in mode or "+" in mode
        if writing and not inside(resolved):
            return "write outside the sandbox: " + describe(resolved)
        if writing and kind == 0:
            count_created()
        if not writing and not may_read(resolved):
            return "read outside the sandbox: " + describe(resolved)
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
            # A filename means an extension module is being dlopen()ed (ExtensionFileLoader): only
            # the standard library's own, never one the solution wrote or found elsewhere.
            if args[1] is not None:
                resolved = resolve(args[1])
                if resolved is None or inside(resolved) or not may_read(resolved) or under(resolved, hidden):
                    deny("extension module loaded from " + describe(args[1]))
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
            if event == "os.mkdir":
                count_created()

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
    paths = sysconfig.get_paths()
    readable = {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib")}
    readable |= {paths[key] for key in ("stdlib", "platstdlib")}
    hidden = {paths[key] for key in ("purelib", "platlib")}
    hidden |= {os.path.realpath(folder) for folder in hidden}
    hook = make_audit_hook(payload["workdir"], channel, tuple(readable), tuple(hidden), payload["max_files"])
    sys.addaudithook(hook)
    del hook

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
