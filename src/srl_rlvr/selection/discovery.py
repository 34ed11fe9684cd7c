"""`srl-rlvr discover`: find base models that may beat the current one, and say why each does or not.

Candidates come from the Hugging Face Hub API (`huggingface_hub`, at HF_ENDPOINT when set, so a
mirror or a recorded server can stand in) or, offline, from a snapshot file: the same JSON the Hub
API answers, which every online run saves beside its findings. Each candidate is held to the
architecture spec's preliminary filter, five criteria of which it must meet `min_criteria` (3):
benchmark results in its card, code that loads it (a library the Hub names), a reasonable size,
recency, and documentation. Those that pass and are not in the selection catalog yet are new; for
each, a `costbenefit` run against the current model is proposed, once the catalog has its numbers.
The run is idempotent, so a scheduler calls it every `update_frequency_days` (`discovery_due`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.config import Config, DiscoveryConfig
from srl_rlvr.errors import DataError, UserError

SNAPSHOT_FILE = "hub-snapshot.json"
FINDINGS_FILE = "discovered.yaml"
# What one list call asks the Hub for: enough to judge all five criteria without a call per model.
EXPAND = [
    "createdAt",
    "downloads",
    "likes",
    "library_name",
    "pipeline_tag",
    "safetensors",
    "cardData",
    "siblings",
    "tags",
]


class DiscoveryError(UserError):
    """The Hub cannot be reached or answered something unreadable."""


@dataclass
class HubModel:
    id: str
    parameters_b: float | None
    created: datetime | None
    downloads: int
    license: str | None
    library: str | None
    benchmarks: int  # evaluation results in its model card
    documented: bool


@dataclass
class Criterion:
    name: str
    met: bool
    reason: str


@dataclass
class Finding:
    model: HubModel
    criteria: list[Criterion]
    passed: bool
    in_catalog: bool

    @property
    def met(self) -> int:
        return sum(c.met for c in self.criteria)


@dataclass
class Discovery:
    findings: list[Finding]
    source: str
    proposals: list[str] = field(default_factory=list)

    @property
    def new(self) -> list[Finding]:
        return [f for f in self.findings if f.passed and not f.in_catalog]


def hub_model(item: dict[str, Any]) -> HubModel:
    """One model of a Hub API list answer (its JSON, as the Hub sends it)."""
    from huggingface_hub.hf_api import ModelInfo

    info = ModelInfo(**{**item, "siblings": item.get("siblings")})
    card = info.card_data
    total = info.safetensors.total if info.safetensors else None
    licence = getattr(card, "license", None) or next(
        (t.removeprefix("license:") for t in info.tags or [] if t.startswith("license:")), None
    )
    readme = any(s.rfilename.lower() == "readme.md" for s in info.siblings or [])
    return HubModel(
        id=info.id,
        parameters_b=total / 1e9 if total else None,
        created=info.created_at,
        downloads=info.downloads or 0,
        license=licence,
        library=info.library_name,
        benchmarks=len(getattr(card, "eval_results", None) or []),
        documented=readme and card is not None,
    )


def fetch_hub(settings: DiscoveryConfig, endpoint: str | None = None) -> list[dict[str, Any]]:
    """The Hub API's list answer, as JSON rows (kept as the offline snapshot)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT"))
    params: dict[str, Any] = {
        "pipeline_tag": settings.pipeline_tag,
        "sort": "downloads",
        "limit": settings.limit,
        "expand": EXPAND,
    }
    if settings.search:
        params["search"] = settings.search
    try:
        # list_models would turn the rows into objects; the raw rows are what the snapshot keeps
        response = get_session().get(
            f"{api.endpoint}/api/models", params=params, headers=build_hf_headers(), timeout=30
        )
        hf_raise_for_status(response)
        rows = response.json()
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DiscoveryError(
            f"the Hugging Face Hub at {api.endpoint} did not answer ({first}); run offline with "
            f"--offline {SNAPSHOT_FILE} (a snapshot an earlier run saved)"
        ) from None
    if not isinstance(rows, list):
        raise DiscoveryError(f"{api.endpoint}/api/models answered no list of models")
    return rows


def read_snapshot(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"snapshot not found: {path} (an online `srl-rlvr discover` writes one)")
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "id" in r for r in rows):
        raise DataError(f"{path}: expected a list of Hub models, each with an 'id'")
    return rows


def criteria(model: HubModel, settings: DiscoveryConfig, now: datetime) -> list[Criterion]:
    """The spec's five, each with the reason it is met or not."""
    size = model.parameters_b
    low, high = settings.min_parameters_b, settings.max_parameters_b
    age = (now - model.created).days if model.created else None
    return [
        Criterion(
            "has_benchmarks",
            model.benchmarks > 0,
            f"{model.benchmarks} evaluation result(s) in its card"
            if model.benchmarks
            else "no evaluation results in its card",
        ),
        Criterion(
            "has_code",
            model.library is not None,
            f"loads with {model.library}" if model.library else "no library named to load it",
        ),
        Criterion(
            "size_reasonable",
            size is not None and low <= size <= high,
            "parameter count not published"
            if size is None
            else f"{size:.2f}B parameters {'within' if low <= size <= high else 'outside'} {low:g}-{high:g}B",
        ),
        Criterion(
            "recent",
            age is not None and age <= settings.recent_days,
            "no creation date" if age is None else f"created {age} days ago (limit {settings.recent_days})",
        ),
        Criterion(
            "has_documentation",
            model.documented,
            "a model card (README.md)" if model.documented else "no model card",
        ),
    ]


def catalog_ids(path: str | Path | None) -> set[str]:
    """Ids (and names) of the selection catalog's candidates; empty without a catalog."""
    if path is None:
        return set()
    from srl_rlvr.selection.catalog import load_catalog

    return {key for c in load_catalog(path) for key in (c.id, c.name)}


def discover(
    rows: list[dict[str, Any]], settings: DiscoveryConfig, now: datetime, known: set[str], source: str
) -> Discovery:
    findings = []
    for row in rows:
        model = hub_model(row)
        checks = criteria(model, settings, now)
        passed = sum(c.met for c in checks) >= settings.min_criteria
        findings.append(Finding(model, checks, passed, model.id in known))
    return Discovery(findings, source)


def propose_costbenefit(discovery: Discovery, settings: DiscoveryConfig, current: str) -> list[str]:
    """The `costbenefit` run each new candidate needs; the catalog must first hold its numbers
    (measure them with `srl-rlvr eval --model ID`)."""
    role = settings.role or "ROLE.yaml"
    catalog = settings.catalog or "CATALOG.yaml"
    return [
        f"srl-rlvr costbenefit --role {role} --current {current} --new {f.model.id} --catalog {catalog}"
        for f in discovery.new
    ]


def write_findings(discovery: Discovery, path: Path) -> Path:
    def entry(f: Finding) -> dict[str, Any]:
        model = asdict(f.model) | {"created": f.model.created.isoformat() if f.model.created else None}
        return {
            **model,
            "passed": f.passed,
            "criteria_met": f.met,
            "in_catalog": f.in_catalog,
            "reasons": {c.name: ("met: " if c.met else "not met: ") + c.reason for c in f.criteria},
        }

    record = {
        "source": discovery.source,
        "new": [f.model.id for f in discovery.new],
        "candidates": [entry(f) for f in discovery.findings],
        "proposed_costbenefit": discovery.proposals,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    return path


def run_discovery(
    config: Config, out: str | Path, offline: str | Path | None = None, now: datetime | None = None
) -> Discovery:
    """Fetch (or read) candidates, judge them, diff against the catalog, write `discovered.yaml`
    (and, online, the snapshot) into `out`. What the management service's schedule calls."""
    settings = config.model_selection.discovery
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if offline is not None:
        rows, source = read_snapshot(offline), str(offline)
    else:
        rows = fetch_hub(settings)
        (out / SNAPSHOT_FILE).write_text(json.dumps(rows, indent=1) + "\n")
        from huggingface_hub import HfApi

        source = HfApi(endpoint=os.environ.get("HF_ENDPOINT")).endpoint
    found = discover(rows, settings, now or datetime.now(timezone.utc), catalog_ids(settings.catalog), source)
    found.proposals = propose_costbenefit(found, settings, config.model.name_or_path)
    write_findings(found, out / FINDINGS_FILE)
    return found


def discovery_due(last_run: datetime | None, now: datetime, update_frequency_days: int) -> bool:
    """Whether a scheduler should run `discover` now: never run, or `update_frequency_days` since."""
    return last_run is None or now - last_run >= timedelta(days=update_frequency_days)
