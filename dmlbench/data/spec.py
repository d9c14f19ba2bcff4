"""What a benchmark is: its records, splits, transforms and default recipe.

A dataset spec knows its training-class count without reading images (so
``dmlbench params`` can build the model), which splits train and which are
searched at test time, and the paper's training recipe for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.transforms import TransformSpec
from dmlbench.entry_points import NameTaken, check_plugin_class, clash_message, load_group, origin
from dmlbench.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """Training defaults for a dataset; any run-config key left unset takes these.

    The defaults are the VPTSP reference's CUB settings (its
    config/cub200_small.yaml and main.py; docs/fidelity.md lists each).
    """

    backbone: str = "vit_small_patch16_224.augreg_in21k"
    weights: str = "pretrained"
    epochs: int = 15
    batch_size: int = 64
    images_per_class: int = 2
    sampler: str = "class-random"  # batch/k random classes per batch, k images each
    optimizer: str = "sgd"
    lr: float = 5e-3
    proxy_lr: float = 0.1
    weight_decay: float = 1e-6
    proxy_init: str = "reference"  # xavier_uniform / 8
    lr_schedule: str = "cosine-epochs"  # CosineAnnealingLR stepped per epoch
    cosine_epochs: int | None = 50  # its T_max (lr_cosine_length)
    lr_min: float = 1e-8  # its eta_min (lr_cosine_min)
    grad_clip: float = 0.0  # the reference does not clip
    loss_positive_divisor: str = "all"  # both Proxy-Anchor terms divided by C
    amp: str = "fp16"  # torch.cuda.amp.autocast() with a GradScaler
    eval_every: int = 1  # the reference evaluates every epoch (best-on-test is recorded too)
    # Settings one method needs on this dataset (method name → run-config keys,
    # and "method_options" → option values), as papers set some things per
    # method; they still yield to a flag, YAML key or --opt.
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)

    def defaults_for(self, method: str) -> dict[str, Any]:
        """The recipe's run-config defaults as ``method`` gets them (with a
        ``method_options`` key: the recipe's option values for it)."""
        values = {k: v for k, v in self.__dict__.items() if k != "per_method"}
        values["method_options"] = {}
        for key, value in self.per_method.get(method, {}).items():
            if key == "method_options":
                values["method_options"] = dict(value)
            else:
                values[key] = value
        return values


class DatasetSpec:
    """Base class of dataset specs; subclasses fill the class attributes and ``records``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    recall_ks: tuple[int, ...] = (1, 2, 4, 8)
    train_split: str = "train"
    # One split: queries searched among themselves; two: (query, gallery).
    eval_splits: tuple[str, ...] = ("test",)
    # A split of shipped validation classes (None: carved from the training classes).
    val_split: str | None = None
    # NMI and F1 of a k-means clustering (single-set evaluation only), MAP@K depths.
    cluster_metrics: bool = True
    map_at: tuple[int, ...] = ()
    transform: TransformSpec = TransformSpec()
    recipe: Recipe = Recipe()

    @property
    def num_train_classes(self) -> int:
        raise NotImplementedError

    def records(self) -> list[ImageRecord]:
        """Every image with its label and split; generates or verifies data as needed."""
        raise NotImplementedError

    def location(self) -> str:
        return ""

    def is_present(self) -> bool:
        return True

    def scan_key(self) -> Path | None:
        """The file whose change means the images must be checked again (None: never check,
        e.g. generated data)."""
        return None

    def missing_message(self) -> str:
        return f"dataset {self.name}: data not found at {self.location()}"

    def class_caption(self, label: str) -> str:
        """How a class is named under its pictures in `dmlbench show` grids."""
        return label

    def split_sizes(self) -> dict[str, tuple[int, int]]:
        """(classes, images) per split, known without reading the data ({} if unknown)."""
        return {}


@dataclass
class DatasetCatalog:
    factories: dict[str, Callable[[], DatasetSpec]] = field(default_factory=dict)
    prefixed: dict[str, Callable[[str], DatasetSpec]] = field(default_factory=dict)


CATALOG = DatasetCatalog()


DATASET_ENTRY_POINTS = "dmlbench.datasets"


def register_dataset(name: str):
    """Class decorator for a DatasetSpec subclass with a no-argument constructor."""

    def decorate(cls):
        existing = CATALOG.factories.get(name)
        if existing is not None and origin(existing) != origin(cls):
            raise NameTaken(clash_message("dataset", name, existing, cls))
        check_dataset_hooks(cls, f"@register_dataset({name!r})")
        cls.name = name
        CATALOG.factories[name] = cls
        return cls

    return decorate


def register_dataset_prefix(prefix: str, factory: Callable[[str], DatasetSpec]) -> None:
    """``PREFIX:ARG`` dataset names, e.g. ``folder:/path/to/images``: ``factory`` is a
    DatasetSpec subclass whose constructor takes ARG."""
    check_dataset_hooks(factory, f"register_dataset_prefix({prefix!r}, …)")
    CATALOG.prefixed[prefix] = factory


def check_dataset_hooks(cls: object, where: str) -> None:
    check_plugin_class("dataset", cls, DatasetSpec, "records", where,
                       "it lists every image with its label and split")  # fmt: skip


_discovered = False


def _discover() -> None:
    """Import the built-in datasets (their @register_dataset runs) and, once, the
    plugins of the ``dmlbench.datasets`` entry-point group."""
    global _discovered
    import dmlbench.data.folder  # noqa: F401
    import dmlbench.data.glyphs.benchmark  # noqa: F401
    import dmlbench.data.public.cars  # noqa: F401
    import dmlbench.data.public.cub  # noqa: F401
    import dmlbench.data.public.inshop  # noqa: F401
    import dmlbench.data.public.sop  # noqa: F401

    if not _discovered:
        _discovered = True
        load_group(DATASET_ENTRY_POINTS)


def dataset_names() -> list[str]:
    _discover()
    return sorted(CATALOG.factories) + [f"{p}:PATH" for p in sorted(CATALOG.prefixed)]


def get_dataset(name: str, data_root: str | Path | None = None) -> DatasetSpec:
    """The spec for ``name``; ``data_root`` overrides where the public benchmarks live."""
    _discover()
    prefix, sep, arg = name.partition(":")
    if sep and prefix in CATALOG.prefixed:
        return CATALOG.prefixed[prefix](arg)
    if name in CATALOG.factories:
        factory = CATALOG.factories[name]
        folder = getattr(factory, "folder", None)
        if data_root is not None and folder:
            return factory(Path(data_root) / folder)
        return factory()
    raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}")
