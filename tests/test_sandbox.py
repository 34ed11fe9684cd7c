import tempfile
import time
import uuid
from pathlib import Path

import pytest

from srl_rlvr.tasks import sandbox
from srl_rlvr.tasks.sandbox import SandboxResult, is_verifiable_test, network_namespace_available
from srl_rlvr.tasks.sandbox_isolation import strongest_available

STRONGEST = strongest_available()

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add('a', 'b') == 'ab'"]
# The audit hook must contain the code on its own (a machine may lack bubblewrap and user
# namespaces), so every containment test runs with the strongest layer here and with the hook alone.
BOTH_LAYERS = pytest.mark.parametrize("isolation", [STRONGEST, "hook"], ids=["isolated", "hook-only"])


def run_tests(code: str, tests: list[str], **options: object) -> SandboxResult:
    """The sandbox on the strongest layer this machine has, unless the test names one."""
    return sandbox.run_tests(code, tests, **{"isolation": STRONGEST, **options})  # type: ignore[arg-type]


def test_correct_code_passes_every_test() -> None:
    result = run_tests(ADD, ADD_TESTS)
    assert (result.passed, result.total) == (3, 3)
    assert result.syntax_ok and not result.timed_out and not result.violations and result.error is None


def test_partly_correct_code_passes_only_some_tests() -> None:
    result = run_tests("def add(a, b):\n    return 3 if a == 1 else 0\n", ADD_TESTS)
    assert (result.passed, result.total) == (2, 3)


def test_each_test_runs_separately_so_one_exception_fails_only_its_test() -> None:
    code = "def add(a, b):\n    if a == -1:\n        raise ValueError('no')\n    return a + b\n"
    assert run_tests(code, ADD_TESTS).passed == 2


def test_syntax_error_passes_nothing_and_is_reported() -> None:
    result = run_tests("def add(a, b)\n    return a + b\n", ADD_TESTS)
    assert result.passed == 0 and not result.syntax_ok
    assert "syntax" in (result.error or "")


def test_infinite_loop_is_stopped_within_its_timeout() -> None:
    start = time.monotonic()
    result = run_tests("def add(a, b):\n    while True:\n        pass\n", ADD_TESTS, timeout_s=1.0)
    assert result.timed_out and result.passed == 0
    assert time.monotonic() - start < 60, "the run was not cut off"  # generous: CI machines are loaded


@BOTH_LAYERS
def test_socket_at_import_is_a_violation(isolation: str) -> None:
    code = "import socket\nsocket.create_connection(('127.0.0.1', 9))\n" + ADD
    result = run_tests(code, ADD_TESTS, isolation=isolation)
    assert result.violations and result.passed == 0


@BOTH_LAYERS
def test_socket_inside_the_function_is_a_violation(isolation: str) -> None:
    code = "import socket\n\ndef add(a, b):\n    socket.socket().bind(('0.0.0.0', 0))\n    return a + b\n"
    result = run_tests(code, ADD_TESTS, isolation=isolation)
    assert result.violations and result.passed == 0


def test_network_namespace_leaves_only_loopback_where_available() -> None:
    if not network_namespace_available():
        pytest.skip("unshare -rn does not work on this host")
    # Listing interfaces opens no socket, so the hook lets it through and the kernel's view shows.
    probe = "assert sorted(name for _, name in __import__('socket').if_nameindex()) == ['lo']"
    assert run_tests("", [probe]).passed == 1


@BOTH_LAYERS
def test_tests_after_a_violation_count_as_failed(isolation: str) -> None:
    code = "import socket\n\ndef f(x):\n    if x == 2:\n        socket.socket()\n    return x\n"
    tests = ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"]
    result = run_tests(code, tests, isolation=isolation)
    assert result.passed == 1 and result.violations == ["socket.__new__"]


@BOTH_LAYERS
@pytest.mark.parametrize("where", ["tmp", "home"])
def test_writing_outside_the_sandbox_is_a_violation_and_leaves_no_file(isolation: str, where: str) -> None:
    base = Path(tempfile.gettempdir()) if where == "tmp" else Path.home()
    target = base / f"srl-sandbox-escape-{uuid.uuid4().hex}"
    code = f"with open({str(target)!r}, 'w') as f:\n    f.write('escaped')\n" + ADD
    result = run_tests(code, ADD_TESTS, isolation=isolation)
    assert result.violations and result.passed == 0
    assert not target.exists()


def test_deleting_or_renaming_outside_the_sandbox_is_a_violation(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for code in (f"import os\nos.remove({str(victim)!r})\n", f"import os\nos.rename({str(victim)!r}, 'x')\n"):
        assert run_tests(code + ADD, ADD_TESTS).violations
    assert victim.read_text() == "precious"


def test_writing_inside_its_working_directory_is_allowed() -> None:
    code = (
        "import os, tempfile\n"
        "with open('scratch.txt', 'w') as f:\n    f.write('ok')\n"
        "os.makedirs('sub/dir')\n"
        "with tempfile.NamedTemporaryFile() as f:\n    f.write(b'ok')\n" + ADD
    )
    result = run_tests(code, ADD_TESTS)
    assert result.passed == 3 and not result.violations


def test_working_directory_is_deleted_afterwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run_tests("open('left-behind.txt', 'w').write('x')\n" + ADD, ADD_TESTS)
    assert list(tmp_path.iterdir()) == []


@BOTH_LAYERS
def test_a_timed_out_run_leaves_no_working_directory(
    isolation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = "i = 0\nwhile True:\n    open(f'f{i % 50}', 'w').write('x')\n    i += 1\n"
    assert run_tests(code, ADD_TESTS, timeout_s=1, isolation=isolation).timed_out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bomb",
    [
        "x = bytearray(1 << 34)\n",
        "def grow():\n    chunks = []\n    while True:\n        chunks.append(b'x' * (1 << 20))\ngrow()\n",
    ],
    ids=["at-once", "growing"],
)
def test_memory_bomb_is_stopped(bomb: str) -> None:
    result = run_tests(bomb + ADD, ADD_TESTS, timeout_s=30.0, memory_mb=256)
    assert result.passed == 0 and "MemoryError" in (result.error or "") and not result.timed_out


@pytest.mark.parametrize(
    "attempt",
    [
        "import subprocess\nsubprocess.run(['true'])\n",
        "import os\nos.system('true')\n",
        "import os\nos.popen('true')\n",
        "import os\nos.execv('/bin/true', ['true'])\n",
        "import os\nos.fork()\n",
        "import ctypes\nctypes.CDLL(None)\n",
    ],
    ids=["subprocess", "os.system", "os.popen", "exec", "fork", "ctypes"],
)
def test_process_and_ffi_escapes_are_violations(attempt: str) -> None:
    result = run_tests(attempt + ADD, ADD_TESTS, isolation="hook")
    assert result.violations and result.passed == 0


def test_catching_the_denial_does_not_hide_the_violation() -> None:
    code = "def add(a, b):\n    try:\n        __import__('os').system('true')\n    except BaseException:\n        pass\n    return a + b\n"
    assert run_tests(code, ADD_TESTS).violations


def test_object_equal_to_everything_does_not_pass() -> None:
    code = "class Anything:\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Anything()\n"
    assert run_tests(code, ADD_TESTS).passed == 0


def test_forged_result_lines_count_as_tampering_not_passes() -> None:
    forge = (
        "import os\n"
        "for fd in range(64):\n"
        "    try:\n"
        "        os.write(fd, b'P 0\\nP 1\\nP 2\\nR 0 999\\nD\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "def add(a, b):\n    return None\n"
    )
    result = run_tests(forge, ADD_TESTS)
    assert result.passed == 0 and "unexpected data on the result channel" in result.violations


def test_common_standard_library_use_is_not_a_violation() -> None:
    code = (
        "import collections, dataclasses, functools, itertools, json, math, re, statistics, typing\n"
        "Point = collections.namedtuple('Point', 'x y')\n"
        "T = typing.TypeVar('T')\n"
        "@dataclasses.dataclass\nclass Box:\n    value: int\n" + ADD
    )
    result = run_tests(code, ADD_TESTS)
    assert result.passed == 3 and not result.violations


def test_values_are_compared_with_python_equality_after_reduction_to_plain_types() -> None:
    code = "import collections\ndef pair():\n    return collections.namedtuple('P', 'x y')(1, 2)\n"
    tests = [
        "assert pair() == (1, 2)",
        "assert 2 in pair()",
        "assert pair() != (2, 1)",
        "assert pair() == [1, 2]",
    ]
    assert run_tests(code, tests).passed == 3


def test_main_guard_of_a_completion_does_not_run() -> None:
    code = ADD + "if __name__ == '__main__':\n    print(add(input(), 1))\n"
    assert run_tests(code, ADD_TESTS).passed == 3


def test_only_literal_comparisons_are_unforgeable() -> None:
    assert is_verifiable_test("assert f([1, 2]) == {'a': (1, None)}")
    assert is_verifiable_test("assert f(0) is None")
    assert not is_verifiable_test("assert f(0)")
    assert not is_verifiable_test("assert f(0) == g(0)")


def test_denied_import_through_a_str_subclass_is_still_denied() -> None:
    code = (
        "class Name(str):\n"
        "    def split(self, *args):\n"
        "        return []\n"
        "__import__(Name('_posixsubprocess'))\n" + ADD
    )
    assert run_tests(code, ADD_TESTS).violations


def test_hostile_result_lines_are_tampering_and_never_crash_the_parent() -> None:
    junk = "R \\u00b2 1\\nR 99999999999999999999 1\\nR 0 " + "[" * 5000 + "\\nV\\nX\\n"
    code = f"import os\nfor fd in range(64):\n    try:\n        os.write(fd, {junk!r}.encode())\n    except OSError:\n        pass\n"
    result = run_tests(code + ADD, ADD_TESTS)
    assert "unexpected data on the result channel" in result.violations


def test_creating_a_fifo_outside_the_sandbox_is_a_violation() -> None:
    target = Path(tempfile.gettempdir()) / f"srl-sandbox-fifo-{uuid.uuid4().hex}"
    result = run_tests(f"import os\nos.mkfifo({str(target)!r})\n" + ADD, ADD_TESTS)
    assert result.violations == ["os.mkfifo"] and not target.exists()
