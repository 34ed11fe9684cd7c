"""The escape catalogue: each way out of the code sandbox scores 0 and names its violation.

Every attempt runs on every layer: bubblewrap (CI installs it), `unshare -rn` and the audit hook alone;
a layer this machine cannot give must refuse to run the code at all (the sandbox fails closed), which
blocks the attempt too. The checks of what the kernel layer itself shows the child need bubblewrap.
"""

import _json
import os
import tempfile
from importlib import resources
from pathlib import Path

import pytest

from srl_rlvr.tasks import load_task
from srl_rlvr.tasks.sandbox import SandboxResult, remove_tree
from srl_rlvr.tasks.sandbox import run_tests as run_in_sandbox
from srl_rlvr.tasks.sandbox_isolation import SandboxUnavailable, bubblewrap_available

LAYERS = pytest.mark.parametrize("isolation", ["bubblewrap", "namespace", "hook"])


def run_tests(code: str, tests: list[str], isolation: str) -> SandboxResult:
    """The run's result; a layer that refuses to run here counts as a blocked attempt (passed 0)."""
    try:
        return run_in_sandbox(code, tests, isolation=isolation)  # type: ignore[arg-type]
    except SandboxUnavailable as e:
        assert isolation != "hook", "the audit hook runs everywhere"
        return SandboxResult(0, len(tests), True, False, [f"refused to run: {e}"])


ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
CODEGEN_DATA = str(resources.files("srl_rlvr.tasks") / "data" / "codegen.jsonl")
EXTENSION = _json.__file__  # a standard extension module, copied into the work dir by an escape
ATTACHED = os.path.join(tempfile.gettempdir(), "srl-escape-attached.db")

ESCAPES = {
    "read /etc/passwd into stderr": "import sys\nsys.stderr.write(open('/etc/passwd').read())\n" + ADD,
    "read the task's own test data": f"rows = open({CODEGEN_DATA!r}).read()\n" + ADD,
    "read a file in root's home": "open('/root/.bashrc').read()\n" + ADD,
    "write outside": "open('/tmp/srl-escape-write', 'w').write('x')\n" + ADD,
    "network": "import socket\nsocket.create_connection(('127.0.0.1', 22))\n" + ADD,
    "fork": "import os\nos.fork()\n" + ADD,
    "subprocess": "import subprocess\nsubprocess.run(['cat', '/etc/passwd'])\n" + ADD,
    "ctypes": "import ctypes\nctypes.CDLL(None).system(b'true')\n" + ADD,
    # The probe's escape without bubblewrap: write an extension module, dlopen it through importlib
    # (no audit event but `import` names the file). A copy of a standard one stands in for its C code.
    "load an extension module it wrote": (
        "import importlib.machinery, importlib.util\n"
        f"data = open({EXTENSION!r}, 'rb').read()\n"
        "open('_mine.so', 'wb').write(data)\n"
        "loader = importlib.machinery.ExtensionFileLoader('_json', '_mine.so')\n"
        "spec = importlib.util.spec_from_file_location('_json', '_mine.so', loader=loader)\n"
        "importlib.util.module_from_spec(spec)\n" + ADD
    ),
    "SQLite ATTACH of a host file": (
        "import sqlite3\nc = sqlite3.connect(':memory:')\n"
        f"c.execute(\"ATTACH DATABASE '{ATTACHED}' AS host\")\n"
        "c.execute('CREATE TABLE host.t (x)')\n" + ADD
    ),
    "nest folders past the parent's recursion limit": (
        "import os\nfor _ in range(1100):\n    os.mkdir('d')\n    os.chdir('d')\n" + ADD
    ),
    "nest folders by path": "import os\npath = '.'\nfor _ in range(1100):\n"
    "    path += '/d'\n    os.mkdir(path)\n" + ADD,
    "fill the disk with files": "for i in range(5000):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n"
    + ADD,
}


@LAYERS
@pytest.mark.parametrize("attempt", list(ESCAPES), ids=list(ESCAPES))
def test_every_escape_scores_zero_with_a_named_violation(isolation: str, attempt: str) -> None:
    result = run_tests(ESCAPES[attempt], ADD_TESTS, isolation=isolation)
    assert result.passed == 0 and result.violations, result
    assert all(v and v != "sandbox policy violation (report lost)" for v in result.violations)
    assert not os.path.exists(ATTACHED)


def test_a_tree_too_deep_for_shutil_is_still_removed(tmp_path: Path) -> None:
    # shutil.rmtree recursed and raised RecursionError in the parent: the reward computation crashed.
    root = tmp_path / "work"
    os.makedirs(root)
    fd = os.open(root, os.O_RDONLY)
    for _ in range(1100):
        os.mkdir("d", dir_fd=fd)
        fd, old = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    os.close(fd)
    remove_tree(str(root))
    assert not root.exists()


@LAYERS
def test_a_solution_that_looks_up_the_expected_values_cannot_cheat(isolation: str) -> None:
    # The exploit a security probe found: read the packaged test data and run its reference solution.
    problem = load_task("codegen").sample(1, seed=0, split="test")[0]
    entry = problem.metadata["entry_point"]
    cheat = (
        "import json\n"
        f"for line in open({CODEGEN_DATA!r}):\n"
        f"    if {entry!r} in line:\n"
        "        row = json.loads(line)\n"
        "        exec(row['solution'])\n"
        "        break\n"
    )
    result = run_tests(cheat, problem.answer, isolation=isolation)
    assert result.passed == 0
    assert any("read outside the sandbox" in v or "refused to run" in v for v in result.violations)


@LAYERS
def test_huge_output_cannot_flood_the_parent(isolation: str) -> None:
    code = "import sys\nsys.stderr.write('x' * (1 << 24))\nprint('y' * (1 << 24))\n" + ADD
    result = run_tests(code, ADD_TESTS, isolation=isolation)
    assert len(result.error or "") < 5_000


def test_under_bubblewrap_the_child_is_nobody_and_sees_no_host_files() -> None:
    if not bubblewrap_available():
        pytest.skip("bubblewrap is not installed or cannot run here (apt-get install bubblewrap)")
    # stat() and getuid() raise no audit event: these answers come from the kernel layer alone.
    probes = [
        "assert __import__('os').getuid() == 65534",
        "assert __import__('os').path.exists('/etc/passwd') == False",
        f"assert __import__('os').path.exists({CODEGEN_DATA!r}) == False",
        "assert sorted(name for _, name in __import__('socket').if_nameindex()) == ['lo']",
    ]
    result = run_tests("", probes, isolation="bubblewrap")
    assert result.passed == 4, result
