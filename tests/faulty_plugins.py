"""Small plugins with one mistake each, as a plugin author might make them.

They are registered by the tests that use them (on a copy of the registries),
so importing this module registers nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from dmlbench.plugin import DatasetSpec, ImageRecord, Method


class GateToken(Method):
    """Adds a gate vector outside ``model.backbone`` through a forward hook: with the
    backbone frozen it runs without autograd, so the gate never gets a gradient."""

    description = "a gate token added to the features by a hook (outside the backbone)"

    def attach(self, model):
        self.freeze(model)
        model.gate = nn.Parameter(torch.zeros(model.spec.feature_dim))
        model.backbone.register_forward_hook(lambda module, args, out: out + model.gate)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec):
        return spec.feature_dim + spec.proxy_params


class WrongFormula(Method):
    """Trains the head and proxies but forgets the head's LayerNorm in its formula."""

    description = "head and proxies, with a formula that misses the head's norm"

    def attach(self, model):
        self.freeze(model)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec):
        return spec.head_params - 2 * spec.feature_dim + spec.proxy_params


class NoAttach(Method):
    description = "forgot its attach hook"


class MisspeltHook(Method):
    description = "spells attach wrong"

    def attach(self, model):
        self.freeze(model)

    def tunable_formular(self, spec):  # meant: tunable_formula
        return 0


class NormTuning(Method):
    """LayerNorm tuning with an honest formula from ModelSpec: every norm's γ and β."""

    description = "every LayerNorm's affine parameters, the head and the proxies"

    def attach(self, model):
        self.freeze(model)
        for module in model.backbone.modules():
            if isinstance(module, nn.LayerNorm):
                self.unfreeze(module)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec):
        return spec.norm_params + spec.head_params + spec.proxy_params + self.bias_formula(spec)

    def bias_formula(self, spec):
        """The norms' biases train already: the option adds the other biases."""
        return spec.backbone_bias_params - sum(spec.norm_widths) if self.options.bias else 0


class ToyDataset(DatasetSpec):
    """Records over a folder of class sub-folders; subclasses break one rule each."""

    description = "a toy dataset over a folder of class sub-folders"
    folder = None  # set by the test
    train_labels: tuple[str, ...] = ("class_00", "class_01", "class_02", "class_03")

    @property
    def num_train_classes(self) -> int:
        return len(self.train_labels)

    def records(self):
        records = []
        for class_dir in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            split = "train" if class_dir.name in self.train_labels else "test"
            for path in sorted(class_dir.glob("*.png")):
                records.append(ImageRecord(path, class_dir.name, split))
        return records


class OverlappingClasses(ToyDataset):
    description = "test images of a training class"

    def records(self):
        records = super().records()
        first_train = next(r for r in records if r.split == "train")
        return [*records, ImageRecord(first_train.path, first_train.label, "test")]


class MissingImage(ToyDataset):
    description = "a record whose file is gone"

    def records(self):
        records = super().records()
        return [*records, ImageRecord(self.folder / "class_00" / "gone.png", "class_00", "train")]


class WrongClassCount(ToyDataset):
    description = "declares 5 training classes, has 4"

    @property
    def num_train_classes(self) -> int:
        return 5


def make_prefixed(arg: str):  # a plain function, not a DatasetSpec subclass
    return ToyDataset()
