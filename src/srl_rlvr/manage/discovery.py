"""Discovery on the management layer's schedule: `discover` every
`model_selection.update_frequency_days`, its findings where `discover` writes them
(OUTPUT_DIR/discover/discovered.yaml), an alert for each candidate that passes the filter and the
catalog lacks, and the cost-benefit runs it proposes kept in the state for `manage status`.

The proposals are recorded, not queued: a `costbenefit` run needs the candidate's measured numbers
in the catalog first (`srl-rlvr eval --model ID`), which is a person's decision to spend a device on.
A Hub that cannot be reached is recorded and alerted; the schedule still counts the run as done, so
a down Hub costs one attempt per period, not a 30-second timeout every pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from srl_rlvr.config import Config
from srl_rlvr.errors import UserError
from srl_rlvr.manage.state import DISCOVERIES, last_run, set_last_run
from srl_rlvr.selection.discovery import FINDINGS_FILE, discovery_due, run_discovery

log = logging.getLogger(__name__)

DISCOVER = "discover"
AlertFn = Callable[[str, str, str, str], None]  # (key, kind, model, text)


def findings_dir(config: Config) -> Path:
    return Path(config.output_dir) / "discover"


def discover_if_due(config: Config, engine: Engine, now: datetime, alert: AlertFn) -> list[str] | None:
    """Run discovery when it is due; the new candidates' ids, or None when it was not due."""
    days = config.model_selection.update_frequency_days
    if not discovery_due(last_run(engine, DISCOVER), now, days):
        return None
    out = findings_dir(config)
    row: dict[str, object] = {"time": now, "findings": str(out / FINDINGS_FILE)}
    new: list[str] = []
    try:
        found = run_discovery(config, out, config.manage.discovery_snapshot, now)
    except UserError as e:  # the Hub down or a bad snapshot: said once, and the loop goes on
        log.warning("discovery: %s", e)
        row |= {"error": str(e), "findings": None}
        alert(f"discover:failed:{now:%Y-%m-%d}", "job_failed", DISCOVER, f"discovery failed: {e}")
    else:
        new = [f.model.id for f in found.new]
        row |= {"source": found.source, "new": new, "proposals": found.proposals}
        for finding, command in zip(found.new, found.proposals, strict=True):
            alert(
                f"discover:{finding.model.id}",  # once per candidate, however often it is found again
                "discovered",
                finding.model.id,
                f"discovery: {finding.model.id} passes {finding.met} of 5 criteria and is not in the "
                f"catalog; proposed: {command}",
            )
    with engine.begin() as connection:
        connection.execute(insert(DISCOVERIES).values(**row))
    set_last_run(engine, DISCOVER, now, now + timedelta(days=days))
    return new
