"""The method contract as a reusable check, for dmlbench's own methods and plugins.

    from dmlbench.testing import check_method
    check_method("vpt", {"layers": 1})          # raises AssertionError naming the breach

What every method must keep (peft's custom-model test table plays the same role
there), on a tiny ViT (width 32, depth 12, so paper-default options fit):

* its tunable-parameter count equals its ``tunable_formula``;
* the ``bias`` option adds exactly the backbone's biases, no more;
* after a few steps exactly the declared parameters moved (each one), the
  frozen backbone's weights and buffers are bit-identical;
* saving through the real checkpoint path (the trainer's state, as a run
  checkpoints it) and restoring into a fresh model gives a bit-identical
  next step;
* the saved tunable state reloads into identical embeddings;
* evaluation is deterministic, and the model evaluation embeds with
  (``inference_model``, e.g. LoRA merged) gives the same embeddings (1e-5).

``check_dataset(name)`` is its twin for datasets: records in class-disjoint
splits, the declared training-class count, every file present and decodable
to RGB, and the dataset's recipe and transforms usable by a run.
``write_cub_layout`` makes a CUB_200_2011 folder in the real format from
generated images, for tests and checks that need the real reader.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import timm
import torch

from dmlbench.assets import GLYPH_BACKBONE
from dmlbench.method import Method
from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.nn.model import EmbeddingModel
from dmlbench.registry import get_method
from dmlbench.train.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from dmlbench.train.contract import DeadParameters
from dmlbench.train.meter import count_parameters
from dmlbench.train.state import load_tunable_state, tunable_state
from dmlbench.train.trainer import Trainer

EMBEDDING, CLASSES, PER_CLASS = 16, 4, 2


def tiny_model(seed: int = 0) -> EmbeddingModel:
    """Width 32, depth 12 (the paper's option defaults fit): built in milliseconds."""
    import dmlbench.nn.backbone  # noqa: F401 - registers the glyph ViT with timm

    torch.manual_seed(seed)
    backbone = timm.create_model(GLYPH_BACKBONE, num_classes=0, embed_dim=32, depth=12, num_heads=2)
    return EmbeddingModel(backbone, EMBEDDING, CLASSES)


def batches(steps: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    return [(torch.randn(CLASSES * PER_CLASS, 3, 48, 48, generator=gen), labels)
            for _ in range(steps)]  # fmt: skip


def prepared(cls: type[Method], options: dict, seed: int = 0) -> tuple[EmbeddingModel, Method]:
    model = tiny_model(seed)
    method = cls.from_values(options)
    method.setup(model)
    return model, method


def trainer_for(model: EmbeddingModel, method: Method, optimizer: str = "sgd") -> Trainer:
    """Plain SGD (a parameter moves only if it got a gradient), or AdamW with weight decay
    (optimizer state and decay to carry through a checkpoint)."""
    groups = method.param_groups(model, lr=0.05, proxy_lr=0.5)
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=0.05)
    else:
        opt = torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    return Trainer(model, method, ProxyAnchorLoss(), opt, schedule, torch.device("cpu"))


def _tensors(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    """The state dict and the buffers it leaves out (non-persistent ones, e.g. OFT's
    index buffers), which must not change either."""
    state = {k: v for k, v in model.state_dict().items() if torch.is_tensor(v)}
    state.update((f"{k}", v) for k, v in model.named_buffers() if k not in state)
    return {k: v.detach().clone() for k, v in state.items()}


def check_method(method: str | type[Method], options: dict | None = None, steps: int = 3) -> None:
    """Run the contract on ``method`` (a registered name or a Method class) with
    ``options``; raises AssertionError with what broke."""
    cls = get_method(method) if isinstance(method, str) else method
    options = dict(options or {})
    name = f"{cls.name or cls.__name__} {options}"
    _check_count_and_bias(cls, options, name)
    try:
        _check_what_moves(cls, options, name, steps)
    except DeadParameters as e:  # the trainer's own first-step check found it first
        raise AssertionError(f"{name}: {e}") from None
    _check_resume(cls, options, name, steps)
    _check_reload_and_eval(cls, options, name)


def _check_count_and_bias(cls: type[Method], options: dict, name: str) -> None:
    model, method = prepared(cls, options)
    formula = method.tunable_formula(model.spec)
    tunable = count_parameters(model).tunable
    assert formula is not None, f"{name}: gives no tunable_formula"
    assert tunable == formula, f"{name}: {tunable} tunable parameters, formula says {formula}"
    if "bias" not in getattr(cls.Options, "__dataclass_fields__", {}):
        return
    plain, _ = prepared(cls, {**options, "bias": False})
    biased, biased_method = prepared(cls, {**options, "bias": True})
    before = {n for n, p in plain.named_parameters() if p.requires_grad}
    after = {n for n, p in biased.named_parameters() if p.requires_grad}
    biases = {f"backbone.{n}" for n in biased.pretrained_biases()}
    assert after - before <= biases, (
        f"{name}: bias=true also tunes {sorted(after - before - biases)[:3]}"
    )
    assert biases <= after, f"{name}: bias=true leaves {sorted(biases - after)[:3]} frozen"
    added = count_parameters(biased).tunable - count_parameters(plain).tunable
    expected = biased_method.bias_formula(biased.spec)
    assert added == expected, f"{name}: bias=true adds {added} parameters, bias_formula {expected}"


def _check_what_moves(cls: type[Method], options: dict, name: str, steps: int) -> None:
    model, method = prepared(cls, options)
    before = _tensors(model)
    trainer_for(model, method).train_epoch(batches(steps), epoch=1)
    tunable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert tunable, f"{name}: declares nothing tunable"
    for key, value in model.named_parameters():
        moved = not torch.equal(before[key], value)
        if key in tunable:
            assert moved, f"{name}: tunable {key} did not change (no gradient reaches it?)"
        else:
            assert not moved, f"{name}: frozen {key} changed"
    for key, buffer in model.backbone.named_buffers():
        assert torch.equal(before[f"backbone.{key}"], buffer), f"{name}: backbone buffer {key}"


def _check_resume(cls: type[Method], options: dict, name: str, steps: int) -> None:
    data = batches(steps + 1, seed=2)
    model, method = prepared(cls, options)
    trainer = trainer_for(model, method, "adamw")
    trainer.train_epoch(data[:steps], epoch=1)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), trainer.step, {"trainer": trainer.state_dict(),
                                                  "rng": rng_state()}, keep=1)  # fmt: skip
        trainer.train_epoch(data[steps:], epoch=2)  # the uninterrupted run's next step
        fresh_model, fresh_method = prepared(cls, options, seed=0)
        fresh = trainer_for(fresh_model, fresh_method, "adamw")
        payload = load_latest(Path(tmp))
        fresh.load_state_dict(payload["trainer"])
        set_rng_state(payload["rng"])
        fresh.train_epoch(data[steps:], epoch=2)  # the resumed run's next step
    expected, got = _tensors(model), _tensors(fresh_model)
    assert expected.keys() == got.keys(), f"{name}: resumed model has other tensors"
    for key, value in expected.items():
        assert torch.equal(value, got[key]), f"{name}: {key} differs after resuming"


def _check_reload_and_eval(cls: type[Method], options: dict, name: str) -> None:
    model, method = prepared(cls, options)
    trainer_for(model, method).train_epoch(batches(2), epoch=1)
    fresh, _ = prepared(cls, options)
    images = batches(1, seed=3)[0][0]
    model.eval(), fresh.eval()
    with torch.no_grad():
        reference = model(images)
        assert torch.equal(model(images), reference), f"{name}: evaluation is not deterministic"
        merged = method.inference_model(model).eval()
        assert torch.allclose(merged(images), reference, rtol=1e-5, atol=1e-5), (
            f"{name}: inference_model embeds otherwise than the trained model"
        )
        load_tunable_state(fresh, tunable_state(model))
        assert torch.equal(fresh(images), reference), f"{name}: reloaded state embeds otherwise"


def check_dataset(name: str, data_root: str | None = None) -> None:
    """Run the dataset contract on the registered dataset ``name`` (``folder:PATH``
    too); raises AssertionError with what broke."""
    from dmlbench.config import RunConfig, resolve
    from dmlbench.data.contract import check_dataset_contract, check_files_exist
    from dmlbench.data.image_list import load_rgb
    from dmlbench.data.spec import get_dataset
    from dmlbench.data.transforms import test_transform, train_transform
    from dmlbench.data.verify import find_bad_images
    from dmlbench.errors import UserError

    dataset = get_dataset(name, data_root)
    assert isinstance(dataset.description, str) and dataset.description, (
        f"dataset {name}: no description (one line for `dmlbench datasets`)"
    )
    records = dataset.records()
    assert records, f"dataset {name}: records() returned no record"
    try:
        check_dataset_contract(dataset, records)
        check_files_exist(dataset, records)
        resolve(RunConfig(dataset=name), dataset)
    except UserError as e:
        raise AssertionError(str(e)) from None
    splits = {r.split for r in records}
    for split in dataset.eval_splits:
        assert split in splits, f"dataset {name}: no record of its evaluation split {split!r}"
    bad = find_bad_images(records, progress=False)
    assert not bad, f"dataset {name}: {len(bad)} image(s) do not decode, e.g. {bad[0]}"
    image = load_rgb(records[0].path)
    for transform in (train_transform(dataset.transform, 48, (0.5,) * 3, (0.5,) * 3),
                      test_transform(dataset.transform, 48, (0.5,) * 3, (0.5,) * 3)):  # fmt: skip
        tensor = transform(image)
        assert tuple(tensor.shape) == (3, 48, 48), f"dataset {name}: transform gives {tensor.shape}"


def write_cub_layout(
    data_root: Path,
    class_ids: Iterable[int],
    per_class: int,
    write_image: Callable[[Path, int, int], None],
) -> Path:
    """CUB_200_2011 as distributed (``images.txt``, ``image_class_labels.txt``,
    ``classes.txt``, ``images/<class dir>/<file>``) over the classes ``class_ids``
    (1-100 train, 101-200 test), ``per_class`` images each written by
    ``write_image(path, class_id, index)``: the public dataset cannot be downloaded
    where the suite and the GPU check run, and both must go through the real reader."""
    root = data_root / "CUB_200_2011"
    images, labels = [], []
    for c in class_ids:
        for i in range(per_class):
            image_id = len(images) + 1
            relative = f"{c:03d}.Bird_{c}/Bird_{c}_{i:04d}_{image_id}.jpg"
            write_image(root / "images" / relative, c, i)
            images.append(f"{image_id} {relative}\n")
            labels.append(f"{image_id} {c}\n")
    (root / "images.txt").write_text("".join(images))
    (root / "image_class_labels.txt").write_text("".join(labels))
    (root / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in range(1, 201)))
    return root
