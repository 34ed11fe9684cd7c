"""The typed configuration tree, loaded from YAML, with dotted overrides from the command line.

Every default lives in this package, once, with the reason for it: each family of sections in its own
module (model, data, collaboration, policy_rl, training, evaluation, selection, feedback, distill,
pipeline, cloud, manage), the root `Config` and loading here. A config file only states what differs.
Unknown keys are errors (a typo must not silently fall back to a default) and the error names
the closest valid key.
"""

from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from srl_rlvr.config.cloud import (
    METRIC_NAMESPACE,
    AwsConfig,
    AwsTierConfig,
    AwsTiers,
    BronzeTier,
    EmfOutput,
    GoldTier,
    SilverTier,
    TierName,
)
from srl_rlvr.config.collaboration import (
    DEFAULT_RUBRIC,
    CollaborationConfig,
    EndpointConfig,
    LocalTeacherConfig,
    ModelPrice,
    ProblemSourceConfig,
    RequestConfig,
    RetrievalConfig,
    TeacherChoice,
)
from srl_rlvr.config.data import DataConfig, TaskConfig
from srl_rlvr.config.distill import DistillConfig, OnPolicyConfig
from srl_rlvr.config.evaluation import EvalConfig, RegistryConfig
from srl_rlvr.config.feedback import FeedbackConfig, RetrainCriteria
from srl_rlvr.config.manage import ManageConfig, ManagedModel
from srl_rlvr.config.model import LoraConfig, ModelConfig
from srl_rlvr.config.pipeline import PipelineConfig, StageName
from srl_rlvr.config.policy_rl import PolicyRLConfig, RolloutConfig, ScaleOutConfig
from srl_rlvr.config.section import Section
from srl_rlvr.config.selection import DiscoveryConfig, ModelSelectionConfig
from srl_rlvr.config.training import RLVRConfig, SFTConfig, SRLConfig
from srl_rlvr.errors import ConfigError
from srl_rlvr.model_types import EncoderConfig, stages_for
from srl_rlvr.schema import key_paths, schema_errors
from srl_rlvr.trl_names import trl_hints

__all__ = [  # every name `from srl_rlvr.config import X` has always found here
    "DEFAULT_RUBRIC",
    "METRIC_NAMESPACE",
    "AwsConfig",
    "AwsTierConfig",
    "AwsTiers",
    "BronzeTier",
    "CollaborationConfig",
    "Config",
    "DataConfig",
    "DiscoveryConfig",
    "DistillConfig",
    "EmfOutput",
    "EndpointConfig",
    "EvalConfig",
    "FeedbackConfig",
    "GoldTier",
    "LocalTeacherConfig",
    "LoraConfig",
    "ManageConfig",
    "ManagedModel",
    "ModelConfig",
    "ModelPrice",
    "ModelSelectionConfig",
    "OnPolicyConfig",
    "PipelineConfig",
    "PolicyRLConfig",
    "ProblemSourceConfig",
    "RLVRConfig",
    "RegistryConfig",
    "RequestConfig",
    "RetrainCriteria",
    "RetrievalConfig",
    "RolloutConfig",
    "SFTConfig",
    "SRLConfig",
    "ScaleOutConfig",
    "Section",
    "SilverTier",
    "StageName",
    "TaskConfig",
    "TeacherChoice",
    "TierName",
    "apply_override",
    "build_config",
    "dump_config",
    "load_config",
    "parse_yaml",
]


class Config(Section):
    seed: int = 0
    output_dir: str = Field("runs/default", description="The run directory every stage writes into.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    collaboration: CollaborationConfig = Field(default_factory=CollaborationConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    srl: SRLConfig = Field(default_factory=SRLConfig)
    rlvr: RLVRConfig = Field(default_factory=RLVRConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    model_selection: ModelSelectionConfig = Field(default_factory=ModelSelectionConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    manage: ManageConfig = Field(default_factory=ManageConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)

    @model_validator(mode="after")
    def _stages_fit_model_type(self) -> Config:
        """An encoder type's default stages are its own; a stage its type cannot run is an error, not
        a stage silently skipped."""
        runnable = stages_for(self.model.type)
        if self.model.type != "causal_lm" and "stages" not in self.pipeline.model_fields_set:
            self.pipeline.stages = list(runnable)
        refused = [stage for stage in self.pipeline.stages if stage not in runnable]
        if refused:  # ConfigError passes through pydantic: one line, not the whole config echoed
            raise ConfigError(
                f"pipeline.stages: model.type {self.model.type} cannot run {', '.join(refused)}; "
                f"its stages: {', '.join(runnable)}"
            )
        return self


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-5` as a float, as YAML 1.2 does (PyYAML's 1.1 rules make it a string)."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


_UNION_TAGS = {"solver", "endpoint", "local"}  # pydantic puts the chosen union member in error paths


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML (`3e-6` -> float)."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like section.key=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{override}': '{part}' is not a section")
        node = child
    node[leaf] = parse_yaml(value, source=f"override {key}")


def build_config(raw: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    raw = copy.deepcopy(raw or {})
    for override in overrides:
        apply_override(raw, override)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        hints = trl_hints(key_paths(Config))
        raise ConfigError(
            "\n".join(schema_errors(e, Config, skip=_UNION_TAGS, show_input=True, hints=hints))
        ) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    raw: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = parse_yaml(path.read_text(), source=str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: the top level must be a mapping of sections (model:, task:, srl:, ...)"
            )
    return build_config(raw, overrides)


def dump_config(config: Config, described: bool = False) -> str:
    """The config as YAML; `described` puts each field's description above it as a comment (what
    `srl-rlvr config check` prints), so every key explains itself where it is read."""
    if not described:
        return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return "".join(_described_lines(config, ""))


def _described_lines(section: BaseModel, indent: str) -> list[str]:
    lines = []
    for name, field in type(section).model_fields.items():
        if field.exclude:
            continue  # set by the code, not a key users write
        if field.description:
            wrapped = textwrap.wrap(field.description, width=100 - len(indent))
            lines.extend(f"{indent}# {line}\n" for line in wrapped)
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:\n")
            lines.extend(_described_lines(value, indent + "  "))
        else:
            dumped = yaml.safe_dump(
                {name: value.model_dump(mode="json") if isinstance(value, BaseModel) else _plain(value)},
                sort_keys=False,
                default_flow_style=False,
                width=1000,
            )
            lines.extend(f"{indent}{line}\n" for line in dumped.splitlines())
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
