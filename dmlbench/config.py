"""Run configuration: one dataclass, filled from YAML, then CLI flags, then the dataset's recipe.

Keys left unset (None) take the dataset's recipe (the paper's settings for
that benchmark), so ``--dataset cub`` means CUB's published recipe unless a
flag or the YAML says otherwise. The resolved config is stored with the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dmlbench.data.spec import DatasetSpec
from dmlbench.errors import UserError
from dmlbench.options import build_options


@dataclass
class RunConfig:
    method: str = "linear-probe"
    method_options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the row name in reports, e.g. "VPT (L12, N10)"
    dataset: str = "glyphs"
    data_root: str | None = None  # where the public benchmarks live (else $DMLBENCH_DATA)
    skip_bad_images: bool = False  # else unreadable images stop the run before training
    image_cache: int | None = None  # shorter side of cached downsized copies (None: off)
    backbone: str | None = None
    weights: str | None = None  # a file, "pretrained", or "none" (random init)
    embedding_dim: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    images_per_class: int | None = None
    # m-per-class: PML's MPerClassSampler; class-random: the VPTSP reference's
    sampler: Literal["m-per-class", "class-random"] | None = None
    optimizer: Literal["sgd", "adamw"] | None = None
    lr: float | None = None
    proxy_lr: float | None = None
    weight_decay: float | None = None
    # None: the run's weight_decay (the VPTSP and Proxy-Anchor reference codes decay proxies)
    proxy_weight_decay: float | None = None
    proxy_init: Literal["kaiming", "reference"] | None = None  # see EmbeddingModel
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    # cosine-steps: from lr to lr_min over every step; cosine-epochs: torch's
    # CosineAnnealingLR stepped once per epoch with T_max = cosine_epochs (the reference)
    lr_schedule: Literal["cosine-steps", "cosine-epochs"] | None = None
    cosine_epochs: int | None = None  # None: the run's epochs
    lr_min: float | None = None
    grad_clip: float | None = None  # 0: no clipping
    loss_alpha: float = 32.0
    loss_margin: float = 0.1
    loss_positive_divisor: Literal["present", "all"] | None = None
    seed: int = 0
    device: str = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] | None = None
    eval_every: int | None = None  # evaluate every N epochs (0: at the end only)
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at the end of each epoch only)
    keep_checkpoints: int = 2
    eval_batch_size: int = 256
    num_workers: int | None = None
    output: str = "results/runs"

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 0:
            raise ValueError(
                f"epochs must be ≥ 0 (0 = evaluate without training), got {self.epochs}"
            )
        positive = ["batch_size", "images_per_class", "embedding_dim", "eval_batch_size"]
        for key in positive:
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key} must be ≥ 1, got {value}")
        for key in ("lr", "proxy_lr"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        for key in ("weight_decay", "proxy_weight_decay", "lr_min", "grad_clip"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"{key} must be ≥ 0, got {value}")
        if self.cosine_epochs is not None and self.cosine_epochs < 1:
            raise ValueError(f"cosine_epochs must be ≥ 1, got {self.cosine_epochs}")
        if self.checkpoint_every < 0:
            raise ValueError(
                f"checkpoint_every must be ≥ 0 (0 = at epoch ends), got {self.checkpoint_every}"
            )
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be ≥ 1, got {self.keep_checkpoints}")
        if self.eval_every is not None and self.eval_every < 0:
            raise ValueError(f"eval_every must be ≥ 0 (0 = only at the end), got {self.eval_every}")
        if not isinstance(self.method_options, dict):
            raise ValueError("method_options must be a mapping of option name to value")


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def make_config(yaml_path: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """YAML values, overridden by the non-None CLI values; types and ranges checked."""
    values = read_yaml(yaml_path) if yaml_path else {}
    owner = f"config {yaml_path}" if yaml_path else "config"
    options = dict(values.get("method_options") or {})
    options.update(overrides.pop("method_options", None) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if options:
        values["method_options"] = options
    return build_options(RunConfig, values, owner=owner)


def resolve(config: RunConfig, dataset: DatasetSpec) -> RunConfig:
    """Fill every unset key, and every method option the config does not set,
    from the dataset's recipe (as it reads for the config's method), and check
    batch composition."""
    recipe = dataset.recipe.defaults_for(config.method)
    options = {**recipe.pop("method_options", {}), **config.method_options}
    filled = {k: v for k, v in recipe.items() if getattr(config, k) is None}
    resolved = dataclasses.replace(config, **filled, method_options=options)
    if resolved.batch_size % resolved.images_per_class:
        raise UserError(
            f"batch_size {resolved.batch_size} is not divisible by images_per_class "
            f"{resolved.images_per_class}; each batch holds batch_size/images_per_class classes "
            "with images_per_class images each"
        )
    return resolved


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def config_key(config: RunConfig) -> str:
    """What makes two runs the same experiment: every resolved key but where it is stored."""
    import hashlib
    import json

    values = dataclasses.asdict(config)
    for where_and_how_often in ("output", "checkpoint_every", "keep_checkpoints"):
        values.pop(where_and_how_often)  # they change no result
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]
