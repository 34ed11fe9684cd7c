"""`model_selection:`: how `select` weighs cost against performance and what `discover` looks for on the Hub."""

from __future__ import annotations

from pydantic import Field

from srl_rlvr.config.section import Section


class DiscoveryConfig(Section):
    """`srl-rlvr discover`: which Hub models to look at and the spec's preliminary filter (a candidate
    passes when it meets `min_criteria` of five: benchmarks, code, size, recency, documentation)."""

    pipeline_tag: str = Field("text-generation", description="The Hub task the candidates must serve.")
    search: str | None = Field(None, description="A Hub name filter (e.g. 'Qwen'); unset: any name.")
    limit: int = Field(50, gt=0, description="Candidates to fetch, most downloaded first.")
    min_parameters_b: float = Field(1.0, gt=0, description="The spec's 'size reasonable' range starts here.")
    max_parameters_b: float = Field(1000.0, gt=0, description="... and ends here (billions of parameters).")
    recent_days: int = Field(
        90, gt=0, description="'Recent': created at most this many days ago (the spec's 90)."
    )
    min_criteria: int = Field(
        3, ge=1, le=5, description="Criteria of five a candidate must meet (the spec's 3)."
    )
    catalog: str | None = Field(
        None, description="The selection catalog to diff against; candidates already in it are not new."
    )
    role: str | None = Field(None, description="Role profile YAML the proposed costbenefit runs use.")


class ModelSelectionConfig(Section):
    cost_weight: float = Field(
        0.3, ge=0, le=1, description="`select`'s weight of cost for a role profile that names no weights."
    )
    performance_weight: float = Field(
        0.7,
        ge=0,
        le=1,
        description="`select`'s weight of performance for a role profile that names no weights.",
    )
    update_frequency_days: int = Field(
        7, gt=0, description="How often the management service runs `discover` (`discovery_due`)."
    )
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
