"""`srl-rlvr manage serve`: run a pass every `manage.tick_seconds` and expose Prometheus metrics.

The timing is APScheduler's (3.x), not a loop of ours: its SQLAlchemy job store keeps the service's
next run in the same database as the queue, so a restarted service neither fires a burst of missed
runs (`coalesce`) nor runs two passes at once (`max_instances=1`), and a pass that is late by less
than `misfire_grace_time` still runs. Everything a pass decides lives in `tick` and its SQL state,
so the service, a cron line calling `manage tick` and a test driving `tick` do the same thing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from srl_rlvr.config import Config, load_config
from srl_rlvr.manage.tick import state_url, tick

log = logging.getLogger(__name__)

JOB_ID = "srl-rlvr-manage-tick"
APS_TABLE = "manage_apscheduler_jobs"


def scheduled_tick(config_path: str | None, overrides: list[str]) -> None:
    """The job APScheduler stores by reference: reads the config afresh, so an edited config (a new
    budget, a model added) applies from the next pass without a restart."""
    config = load_config(config_path, overrides)
    result = tick(config, datetime.now(timezone.utc))
    for line in [*(f"queued {k}" for k in result.queued), *(f"ran {r}" for r in result.ran), *result.alerts]:
        log.warning("manage: %s", line)  # WARNING: the level the CLI's logging shows


def serve(config: Config, config_path: str | None, overrides: list[str]) -> None:
    """Block, running passes, until interrupted."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    m = config.manage
    if m.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        from srl_rlvr.manage.metrics import ManageCollector
        from srl_rlvr.manage.state import open_state

        registry = CollectorRegistry()
        registry.register(
            ManageCollector(open_state(state_url(config)), config, lambda: datetime.now(timezone.utc))
        )
        start_http_server(m.metrics_port, registry=registry)
    scheduler = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=state_url(config), tablename=APS_TABLE)},
        timezone=timezone.utc,
    )
    scheduler.add_job(
        "srl_rlvr.manage.service:scheduled_tick",
        "interval",
        seconds=m.tick_seconds,
        args=[config_path, overrides],
        id=JOB_ID,
        replace_existing=True,  # the config's interval wins over the stored one
        coalesce=True,
        max_instances=1,
        misfire_grace_time=int(m.tick_seconds),
        next_run_time=datetime.now(timezone.utc),  # a pass at start: the state is current at once
    )
    scheduler.start()
