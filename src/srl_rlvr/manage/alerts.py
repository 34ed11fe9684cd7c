"""Telling people: a Slack-compatible webhook (any URL that takes `{"text": ...}`), and a row per alert
that the Prometheus metrics count.

An alert has a key and is sent once per key (the model and the job, version or month it is about),
so a pass that runs again, or a restart, never repeats one. Delivery is best effort: a webhook that
is down, slow or refuses costs one logged line and the row records it undelivered; the management
loop goes on, because a broken chat integration must not stop production from being watched.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from srl_rlvr.manage.state import ALERTS

log = logging.getLogger(__name__)

KINDS = ("job_failed", "promoted", "rolled_back", "drift", "budget", "discovered")


@dataclass
class Alert:
    key: str
    kind: str
    model: str
    text: str


def post_webhook(url: str, text: str, timeout_s: float) -> bool:
    """POST Slack's incoming-webhook JSON; True when the receiver answered 2xx."""
    request = urllib.request.Request(
        url, data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except urllib.error.HTTPError as e:
        log.warning("webhook %s refused an alert: HTTP %d; alert kept in the state database", url, e.code)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        log.warning("webhook %s unreachable (%s); alert kept in the state database", url, reason)
    return False


def send(engine: Engine, alert: Alert, now: datetime, webhook_url: str | None, timeout_s: float) -> bool:
    """Record and deliver `alert` unless its key was sent before; True when it is new."""
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(ALERTS).values(
                    key=alert.key, kind=alert.kind, model=alert.model, time=now, text=alert.text, delivered=0
                )
            )
    except IntegrityError:
        return False
    log.info("alert %s: %s", alert.kind, alert.text)
    if webhook_url and post_webhook(webhook_url, f"srl-rlvr: {alert.text}", timeout_s):
        with engine.begin() as connection:
            connection.execute(ALERTS.update().where(ALERTS.c.key == alert.key).values(delivered=1))
    return True


def sent(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(ALERTS).order_by(ALERTS.c.id)).mappings()]
