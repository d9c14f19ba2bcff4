"""Run configuration: one dataclass, filled from YAML, then CLI flags, then the dataset's recipe.

Keys left unset (None) take the dataset's recipe (the paper's settings for
that benchmark), so ``--dataset cub`` means CUB's published recipe unless a
flag or the YAML says otherwise. The resolved config is stored with the run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dmlbench.data.spec import DatasetSpec
from dmlbench.errors import UserError
from dmlbench.options import build_options, option
from dmlbench.textfile import read_text

R = "[default: the dataset's recipe]"


@dataclass
class RunConfig:
    """Every setting of a run; ``dmlbench run``'s options are made from these fields
    (``--field-name``, the help below), and a run's config.yaml holds them resolved."""

    method: str = option("linear-probe", "Method name (see `dmlbench methods`).")
    method_options: dict[str, Any] = option(
        None, "Method options (CLI: --opt KEY=VALUE).", default_factory=dict
    )
    label: str | None = option(None, 'Row name in reports, e.g. "VPT (L12, N10)".')
    dataset: str = option("glyphs", "Dataset name or folder:PATH.")
    split: Literal["test", "val"] = option(
        "test",
        "Score on the test classes, or on validation classes (the dataset's own, or "
        "val_fraction of its training classes): choose settings on val, never on test.",
    )
    val_fraction: float = option(0.2, "Share of the training classes carved out as validation.")
    val_seed: int = option(0, "Seed of that draw.")
    data_root: str | None = option(
        None, "Folder of the public benchmarks. [default: $DMLBENCH_DATA]"
    )
    skip_bad_images: bool = option(
        False, "Leave out unreadable images (counted in the summary) instead of stopping."
    )
    image_cache: int | None = option(
        None, "Read downsized copies (shorter side N, e.g. 256), made once in the cache."
    )
    backbone: str | None = option(None, f"timm model name. {R}")
    weights: str | None = option(
        None, "Backbone weights: a .safetensors/.pth file, 'pretrained' or 'none' (random init)."
    )
    embedding_dim: int | None = option(None, "[default: the backbone's width]")
    epochs: int | None = option(None, f"Training epochs; 0 evaluates without training. {R}")
    batch_size: int | None = option(None, R)
    images_per_class: int | None = option(None, f"Images of each class per batch. {R}")
    sampler: Literal["m-per-class", "class-random"] | None = option(
        None, f"Batches: PML's MPerClassSampler, or the VPTSP code's class-random. {R}"
    )
    optimizer: Literal["sgd", "adamw"] | None = option(None, R)
    lr: float | None = option(None, f"Learning rate of the model's parameters. {R}")
    proxy_lr: float | None = option(None, f"Learning rate of the proxies. {R}")
    weight_decay: float | None = option(None, R)
    proxy_weight_decay: float | None = option(
        None, "Weight decay of the proxies. [default: weight_decay]"
    )
    proxy_init: Literal["kaiming", "reference"] | None = option(
        None, f"Proxies: Proxy-Anchor's kaiming init, or the VPTSP code's xavier/8. {R}"
    )
    momentum: float = option(0.9, "SGD momentum.")
    warmup_epochs: float = option(0.0, "Linear warm-up of the learning rate, in epochs.")
    lr_schedule: Literal["cosine-steps", "cosine-epochs"] | None = option(
        None,
        "cosine-steps: from lr to lr_min over all steps; cosine-epochs: CosineAnnealingLR "
        f"stepped per epoch, T_max = cosine_epochs (the VPTSP code). {R}",
    )
    cosine_epochs: int | None = option(None, "T_max of cosine-epochs. [default: epochs]")
    lr_min: float | None = option(None, f"The schedule's floor. {R}")
    grad_clip: float | None = option(None, f"Gradient norm clipping (0: none). {R}")
    loss_alpha: float = option(32.0, "Proxy-Anchor's scale α_s.")
    loss_margin: float = option(0.1, "Proxy-Anchor's margin δ.")
    loss_positive_divisor: Literal["present", "all"] | None = option(
        None, f"Positive term over proxies present in the batch, or all C (the VPTSP code). {R}"
    )
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "auto, cpu, cuda or cuda:N.")
    amp: Literal["auto", "off", "bf16", "fp16"] | None = option(
        None, f"Mixed precision on CUDA (auto: bf16 where supported). {R}"
    )
    eval_every: int | None = option(None, f"Evaluate every N epochs (0: at the end). {R}")
    checkpoint_every: int = option(
        0, "Also checkpoint every N steps (0: at the end of each epoch only)."
    )
    keep_checkpoints: int = option(2, "Keep the newest N checkpoints.")
    eval_batch_size: int = option(256, "Batch size of evaluation.")
    num_workers: int | None = option(None, "Data loader workers. [default: 0 on CPU, else 8]")
    output: str = option("results/runs", "Root folder of run directories.")
    estimate_memory: bool = option(
        True, "Record the estimated accelerator peak of this run's training step."
    )
    selected_by: str | None = option(
        None, "How the settings were chosen (written by `dmlbench tune`; shown in reports)."
    )
    save_embeddings: bool = option(
        True,
        "Store the final evaluation's embeddings (float16) for `dmlbench show`/`compare`; "
        "turn off for SOP-scale sets (they are recomputed from the checkpoint when needed).",
    )
    log: list[Literal["tensorboard", "mlflow", "wandb"]] = option(
        None,
        "Also log to TensorBoard (event files in the run directory), MLflow and/or W&B; "
        "repeatable. Needs pip install 'dmlbench[tensorboard]' / '[mlflow]' / '[wandb]'.",
        default_factory=list,
    )
    mlflow_uri: str | None = option(
        None, "MLflow tracking URI. [default: $MLFLOW_TRACKING_URI, else MLflow's local store]"
    )
    mlflow_experiment: str = option("dmlbench", "MLflow experiment name.")
    wandb_project: str = option("dmlbench", "W&B project (credentials: wandb login).")
    wandb_entity: str | None = option(None, "W&B entity (team). [default: your W&B default]")

    def __post_init__(self) -> None:
        for key, (low, low_open, high, high_open, meaning) in _BOUNDS.items():
            value = getattr(self, key)
            if value is None:
                continue
            inside = math.isfinite(value) and (value > low if low_open else value >= low)
            if high is not None:
                inside = inside and (value < high if high_open else value <= high)
            if not inside:
                bound = f"{'>' if low_open else '≥'} {low:g}" if math.isfinite(low) else "finite"
                if high is not None:
                    bound += f" and {'<' if high_open else '≤'} {high:g}"
                raise ValueError(f"{key} must be {bound}{meaning}, got {value}")
        if has_credentials(self.mlflow_uri):
            raise ValueError(
                "mlflow_uri must not carry credentials (they would be stored with the run); "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"
            )
        if not isinstance(self.method_options, dict):
            raise ValueError("method_options must be a mapping of option name to value")


# key: (low, low excluded, high or None, high excluded, what a bound value means)
_BOUNDS: dict[str, tuple[float, bool, float | None, bool, str]] = {
    "epochs": (0, False, None, False, " (0 = evaluate without training)"),
    "batch_size": (1, False, None, False, ""),
    "images_per_class": (1, False, None, False, ""),
    "embedding_dim": (1, False, None, False, ""),
    "eval_batch_size": (1, False, None, False, ""),
    "image_cache": (1, False, None, False, ""),
    "lr": (0, True, None, False, ""),
    "proxy_lr": (0, True, None, False, ""),
    "weight_decay": (0, False, None, False, ""),
    "proxy_weight_decay": (0, False, None, False, ""),
    "lr_min": (0, False, None, False, ""),
    "grad_clip": (0, False, None, False, " (0 = no clipping)"),
    "momentum": (0, False, 1, True, ""),
    "warmup_epochs": (0, False, None, False, ""),
    "loss_alpha": (0, True, None, False, ""),
    "loss_margin": (-math.inf, False, None, False, ""),
    "val_fraction": (0, True, 1, True, ""),
    "cosine_epochs": (1, False, None, False, ""),
    "checkpoint_every": (0, False, None, False, " (0 = at epoch ends)"),
    "keep_checkpoints": (1, False, None, False, ""),
    "eval_every": (0, False, None, False, " (0 = only at the end)"),
    "num_workers": (0, False, None, False, " (0 = load in the main process)"),
}


def has_credentials(uri: str | None) -> bool:
    from urllib.parse import urlsplit

    return bool(uri) and "@" in (urlsplit(uri).netloc or "")


def take_credentials(uri: str | None) -> str | None:
    """``uri`` without its ``user:password@`` part, which goes to MLflow's own environment
    variables of this process (and so of the runs a sweep starts) unless they are set:
    a credential is never stored, printed or logged as a parameter."""
    import os
    from urllib.parse import unquote, urlsplit, urlunsplit

    if not has_credentials(uri):
        return uri
    parts = urlsplit(uri)
    if parts.username:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username))
    if parts.password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password))
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.constructor.ConstructorError as e:  # e.g. !!python/object: never built
        mark = e.problem_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(
            f"{path}:{where} has a tag that is not plain data ({e.problem}); YAML files are "
            "read as data only: remove the tag"
        ) from None
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
    options: dict[str, Any] = {}
    for given in (values.get("method_options"), overrides.pop("method_options", None)):
        if given and not isinstance(given, dict):
            raise UserError(
                f"{owner}: method_options must be a mapping such as {{layers: 6}}, "
                f"not {type(given).__name__} {given!r}"
            )
        options.update(given or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("mlflow_uri"), str):
        values["mlflow_uri"] = take_credentials(values["mlflow_uri"])
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
    for where_and_how_often in (
        "output",
        "checkpoint_every",
        "keep_checkpoints",
        "estimate_memory",
        "selected_by",
        "save_embeddings",
        "log",
        "mlflow_uri",
        "mlflow_experiment",
        "wandb_project",
        "wandb_entity",
    ):
        values.pop(where_and_how_often)  # they change no result
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]
