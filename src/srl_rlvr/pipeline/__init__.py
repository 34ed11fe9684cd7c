"""The pipeline: `runner.py` walks the stages over one run directory (fingerprints, skip, resume),
`stages.py` runs one stage, `gate.py` keeps a training stage's model only when it beat its input."""

from srl_rlvr.pipeline.runner import PipelineResult, read_state, run_pipeline

__all__ = ["PipelineResult", "read_state", "run_pipeline"]
