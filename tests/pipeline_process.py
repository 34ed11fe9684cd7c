"""A pipeline run as its own process, which SIGKILLs itself at a fixed point of one stage (test_kill9.py).

    python pipeline_process.py '<overrides as JSON>' [stage k]

With a stage, the process dies at that stage's k-th progress event (a row kept, a training step, a
model evaluated) or, for `register`, as the k-th model version is about to be written.
"""

import json
import os
import signal
import sys

from srl_rlvr.config import build_config
from srl_rlvr.pipeline import run_pipeline
from srl_rlvr.pipeline.stages import StageEvent


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    overrides = json.loads(sys.argv[1])
    stage, at = (sys.argv[2], int(sys.argv[3])) if len(sys.argv) > 3 and sys.argv[2] else ("", 0)
    seen = 0

    def on_event(event: StageEvent) -> None:
        nonlocal seen
        if stage and stage != "register" and event.stage == stage and event.kind == "step":
            seen += 1
            if seen >= at:
                die()

    if stage == "register":
        from srl_rlvr.tracking import registry

        original = registry.register

        def register(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal seen
            seen += 1
            if seen >= at:
                die()
            return original(*args, **kwargs)

        registry.register = register
    run_pipeline(build_config(overrides=overrides), on_event=on_event)


if __name__ == "__main__":
    main()
