"""The dataset contract every dataset meets, built-in or plugin, checked at run time.

DML evaluates on unseen classes: a test class that is also a training class
turns retrieval of "unseen" classes into retrieval of seen ones, and the run
would still print its figures as if nothing were wrong. So every run checks,
before anything is written, what its dataset claims: the training, validation
and evaluation splits share no class (a query/gallery pair of evaluation
splits shares its classes by design), ``num_train_classes`` (which sizes the
proxies in ``params`` and ``memory``) equals the records' training classes,
and every record of the run's splits names a file that exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dmlbench.data.image_list import ImageRecord
from dmlbench.errors import UserError


class DatasetContractError(UserError):
    """A dataset's records break the contract (the message says how)."""


def check_dataset_contract(dataset, records: Sequence[ImageRecord]) -> None:
    """Class-disjoint splits and the declared training-class count, over all records."""
    name = dataset.name or type(dataset).__name__
    classes: dict[str, set[str]] = {}
    for record in records:
        classes.setdefault(record.split, set()).add(record.label)
    train = dataset.train_split
    if not classes.get(train):
        raise DatasetContractError(
            f"dataset {name}: no record of its training split {train!r} "
            f"(splits found: {', '.join(sorted(classes)) or 'none'})"
        )
    apart = [s for s in (dataset.val_split, *dataset.eval_splits) if s is not None]
    for i, first in enumerate([train, *apart]):
        for second in [train, *apart][i + 1 :]:
            if first in dataset.eval_splits and second in dataset.eval_splits:
                continue  # a query set and its gallery: the same classes on purpose
            shared = classes.get(first, set()) & classes.get(second, set())
            if shared:
                raise DatasetContractError(
                    f"dataset {name}: {len(shared)} class(es) in both split {first!r} and "
                    f"split {second!r} (e.g. {sorted(shared)[0]!r}); DML scores unseen "
                    "classes, so each class belongs to one split"
                )
    declared = dataset.num_train_classes
    if declared != len(classes[train]):
        raise DatasetContractError(
            f"dataset {name}: num_train_classes says {declared}, its records have "
            f"{len(classes[train])} training classes; make the two agree"
        )


def check_files_exist(dataset, records: Sequence[ImageRecord]) -> None:
    """Every record's file is there (the run's splits only: a validation run never
    looks at a test image). Decoding is the image check's job (``scan_key``)."""
    missing = [r.path for r in records if not Path(r.path).is_file()]
    if missing:
        name = dataset.name or type(dataset).__name__
        raise DatasetContractError(
            f"dataset {name}: {len(missing)} record(s) name a file that does not exist, "
            f"e.g. {missing[0]}"
        )
