"""When a schedule is due: its crontab's next fire time after its last run has come.

APScheduler's CronTrigger reads the crontab (the same parser `manage serve` runs on), so an
expression means one thing in the config check, in a pass and in the service. A schedule that never
ran is due at once: a new deployment monitors its models on its first pass, not at the next quarter
hour. Missed fires are coalesced: a pass after a long stop runs a schedule once, not once per missed
fire.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger


def trigger(cron: str) -> CronTrigger:
    return CronTrigger.from_crontab(cron, timezone="UTC")


def every(days: float) -> IntervalTrigger:
    return IntervalTrigger(seconds=days * 86400, timezone="UTC")


def next_fire(cron: CronTrigger | IntervalTrigger, last: datetime) -> datetime | None:
    # an interval trigger counts from its start date; anchor it at the last run
    if isinstance(cron, IntervalTrigger):
        return last + cron.interval
    return cron.get_next_fire_time(None, last + timedelta(microseconds=1))


def is_due(cron: CronTrigger | IntervalTrigger, last: datetime | None, now: datetime) -> bool:
    if last is None:
        return True
    fire = next_fire(cron, last)
    return fire is not None and fire <= now
