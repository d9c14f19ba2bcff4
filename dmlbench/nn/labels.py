"""The classes of a batch, computed on the label values themselves.

Methods that treat each class of a batch apart (VPTSP's semantic proxies)
need the distinct classes, each image's slot among them and the images per
class. Those depend on the values of the labels, so they are computed here
outside any fake-tensor mode: a memory estimate that runs a training step on
shapes alone (``dmlbench memory``) still knows its labels, which it makes
itself, and everything after this is a matter of shapes again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchClasses:
    classes: torch.Tensor  # U distinct labels, sorted
    slot: torch.Tensor  # B: each image's index into ``classes``
    counts: torch.Tensor  # U: images per class
    longest: int  # the most images of one class


def batch_classes(labels: torch.Tensor) -> BatchClasses:
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        classes, slot = torch.unique(labels, return_inverse=True)
        counts = torch.bincount(slot, minlength=len(classes))
        longest = int(counts.max()) if len(counts) else 0
    return BatchClasses(classes, slot, counts, longest)
