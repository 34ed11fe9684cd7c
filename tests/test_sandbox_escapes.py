"""The escape catalogue: each way out of the code sandbox scores 0 and names its violation.

Every attempt runs under the strongest layer this machine has ('auto': bubblewrap in CI) and under
the audit hook alone, except the checks of what the kernel layer itself shows the child.
"""

from importlib import resources

import pytest

from srl_rlvr.tasks import load_task
from srl_rlvr.tasks.sandbox import run_tests
from srl_rlvr.tasks.sandbox_isolation import bubblewrap_available

LAYERS = pytest.mark.parametrize("isolation", ["auto", "hook"], ids=["isolated", "hook-only"])
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
CODEGEN_DATA = str(resources.files("srl_rlvr.tasks") / "data" / "codegen.jsonl")

ESCAPES = {
    "read /etc/passwd into stderr": "import sys\nsys.stderr.write(open('/etc/passwd').read())\n" + ADD,
    "read the task's own test data": f"rows = open({CODEGEN_DATA!r}).read()\n" + ADD,
    "read a file in root's home": "open('/root/.bashrc').read()\n" + ADD,
    "write outside": "open('/tmp/srl-escape-write', 'w').write('x')\n" + ADD,
    "network": "import socket\nsocket.create_connection(('127.0.0.1', 22))\n" + ADD,
    "fork": "import os\nos.fork()\n" + ADD,
    "subprocess": "import subprocess\nsubprocess.run(['cat', '/etc/passwd'])\n" + ADD,
    "ctypes": "import ctypes\nctypes.CDLL(None).system(b'true')\n" + ADD,
}


@LAYERS
@pytest.mark.parametrize("attempt", list(ESCAPES), ids=list(ESCAPES))
def test_every_escape_scores_zero_with_a_named_violation(isolation: str, attempt: str) -> None:
    result = run_tests(ESCAPES[attempt], ADD_TESTS, isolation=isolation)
    assert result.passed == 0 and result.violations, result
    assert all(v and v != "sandbox policy violation (report lost)" for v in result.violations)


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
    assert result.passed == 0 and any("read outside the sandbox" in v for v in result.violations)


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
