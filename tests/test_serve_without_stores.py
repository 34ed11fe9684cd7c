"""A server that records nothing, and the encoder pipeline with tracking off, need none of the stores.

The records store and the management view are SQLAlchemy, secret redaction of recorded text is
detect-secrets, tracking is MLflow: each is imported where it is used, so an encoder-only server
(`records: null`) and an untracked encoder run start on a machine that has none of them installed.
"""

from __future__ import annotations

import subprocess
import sys

BLOCK = "import sys\nfor name in ('sqlalchemy', 'detect_secrets', 'mlflow'):\n    sys.modules[name] = None\n"


def test_the_server_and_the_encoder_pipeline_import_without_sqlalchemy_detect_secrets_or_mlflow() -> None:
    code = BLOCK + (
        "import srl_rlvr.serve.run, srl_rlvr.serve.config, srl_rlvr.pipeline.encoders\n"
        "from srl_rlvr.data.pii import redact_text\n"
        "print(redact_text('mail me at ana@example.com')[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mail me at [EMAIL]"
