"""Pretraining the shipped glyph backbone (the "ImageNet-21k" of the glyph benchmark).

Supervised classification on the ``pretrain`` glyph classes only, which are
disjoint from the benchmark's train and test classes. The result is saved as
safetensors (backbone without classifier) with metadata saying what made it:
timm config, command, seed, data fingerprint, epochs and final accuracy.

Pretraining takes an hour or more on a CPU, longer than some sessions last, so
after every epoch the whole training state (model with its classifier and stem
norms, optimizer, schedule, every random state, history) is written beside the
output as ``<name>.pretrain-state.pt``; the same command started again
continues from it and ends bit-identical to an uninterrupted run. The file is
removed when the last epoch is done.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from dmlbench.atomic import atomic_path, write_json_atomic
from dmlbench.data.glyphs.render import GlyphPartConfig, ensure_part, fingerprint_id
from dmlbench.data.glyphs.render_v2 import STYLE_V2
from dmlbench.data.image_list import ImageListDataset, read_csv_records
from dmlbench.data.transforms import TransformSpec, train_transform
from dmlbench.errors import UserError
from dmlbench.nn.backbone import GLYPH_BACKBONE, GLYPH_BACKBONE_KWARGS, fold_stem_norms
from dmlbench.progress import progress
from dmlbench.state_file import CorruptState, load_state, save_state
from dmlbench.train.checkpoint import fault_point, move_aside, refuse_pickled
from dmlbench.train.optim import cosine_schedule
from dmlbench.train.pretrain_config import PretrainConfig
from dmlbench.train.seeding import seed_everything


def pretrain(config: PretrainConfig, output: Path, command: str) -> dict:
    generator = seed_everything(config.seed)
    if config.benchmark == "glyphs":
        part_config = GlyphPartConfig("v2-pretrain", config.images_per_class, style=STYLE_V2)
    else:
        part_config = GlyphPartConfig("pretrain", config.images_per_class, seed=0)
    part = ensure_part(part_config)
    records = read_csv_records(part / "manifest.csv")
    chosen = set(sorted({r.label for r in records})[: config.classes])
    records = [r for r in records if r.label in chosen]
    model = timm.create_model(
        GLYPH_BACKBONE,
        pretrained=False,
        num_classes=len({r.label for r in records}),
        stem_norm=True,
    )
    data_cfg = timm.data.resolve_data_config(model=model)
    size = data_cfg["input_size"][-1]
    transform = train_transform(
        TransformSpec(flip=False, crop_scale=(0.8, 1.0), ink=True),
        size,
        data_cfg["mean"],
        data_cfg["std"],
    )
    dataset = ImageListDataset(records, transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, drop_last=True, generator=generator
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    total = config.epochs * len(loader)
    warmup = max(1, int(config.warmup_fraction * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(total, warmup))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    fingerprint = fingerprint_id(json.loads((part / "fingerprint.json").read_text()))
    state_file = state_path(output)
    history: list[dict] = []
    seconds_before = 0.0
    state = _load_state(state_file, config, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, seconds_before = state["history"], state["seconds"]
        print(f"resuming {state_file} after epoch {len(history)}/{config.epochs}", flush=True)
    start = time.time()
    record = json.loads(output.with_suffix(".json").read_text()) if history else {}
    for epoch in range(len(history), config.stop_after or config.epochs):
        model.train()
        correct = seen = 0
        loss_sum = 0.0
        bar = progress(loader, desc=f"pretrain epoch {epoch + 1}/{config.epochs}", unit="batch")
        for images, labels in bar:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                logits = model(images)
                loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_top1": correct / seen})
        # Saved after every epoch, so a stopped job still leaves a usable backbone.
        record = {
            "timm_model": GLYPH_BACKBONE,
            "timm_kwargs": GLYPH_BACKBONE_KWARGS,
            "command": command,
            "config": asdict(config),
            "epochs_done": epoch + 1,
            "data_part": part.name,
            "data_fingerprint": fingerprint,
            "pretrain_classes": len(dataset.classes),
            "pretrain_images": len(dataset),
            "history": history,
            "seconds": round(seconds_before + time.time() - start, 1),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
        }
        save_backbone(model, output, record)
        if epoch + 1 < config.epochs:
            _save_state(state_file, config, fingerprint, model, optimizer, scheduler, generator,
                        history, record["seconds"])  # fmt: skip
            fault_point("pretrain-epoch")
    if len(history) == config.epochs:
        state_file.unlink(missing_ok=True)
    return record


def state_path(output: Path) -> Path:
    """Where an unfinished pretraining keeps its state (beside the weights it writes)."""
    return output.with_name(f"{output.stem}.pretrain-state.safetensors")


def _save_state(path, config, fingerprint, model, optimizer, scheduler, generator, history,
                seconds) -> None:  # fmt: skip
    state = {
        "config": asdict(config),
        "data_fingerprint": fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        # the loader draws its order from ``generator``; the transforms (no workers)
        # from torch's global generator
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "seconds": seconds,
    }
    save_state(path, state)


def _load_state(path: Path, config: PretrainConfig, fingerprint: str) -> dict | None:
    """The unfinished pretraining's state, if there is a readable one (data only: an
    old-format pickle beside it is refused, an unreadable file announced and moved aside)."""
    pickled = path.with_suffix(".pt")
    if pickled.exists() and not path.exists():
        refuse_pickled(pickled)
    if not path.exists():
        return None
    try:
        state = load_state(path)
    except CorruptState as e:
        aside = move_aside(path)
        print(f"{path}: unreadable pretraining state ({e}); moved aside as {aside.name}; "
              "pretraining starts again from epoch 1", flush=True)  # fmt: skip
        return None
    # where to stop is no part of what is trained
    saved, wanted = (dict(c, stop_after=None) for c in (state["config"], asdict(config)))
    if saved != wanted or state["data_fingerprint"] != fingerprint:
        changed = sorted(k for k, v in wanted.items() if saved.get(k) != v)
        what = f"settings {', '.join(changed)}" if changed else "pretraining images"
        raise UserError(
            f"{path}: an unfinished pretraining with other {what}; run the same command to "
            "continue it, or delete the file to start afresh"
        )
    return state


def shippable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pretrained weights as the shipped architecture expects them.

    The stem's BatchNorms are folded into its convolutions, the classifier over
    the pretraining classes is dropped (no user needs it), and fp16 halves the
    file (timm casts back to fp32 on load).
    """
    plain = timm.create_model(GLYPH_BACKBONE, pretrained=False, num_classes=0)
    model.eval()
    fold_stem_norms(model.patch_embed, plain.patch_embed)
    rest = {
        k: v for k, v in model.state_dict().items() if not k.startswith(("head.", "patch_embed."))
    }
    missing, unexpected = plain.load_state_dict(rest, strict=False)
    assert not unexpected and all(k.startswith("patch_embed.") for k in missing)
    return {k: v.detach().to(torch.float16).contiguous() for k, v in plain.state_dict().items()}


def save_backbone(model: nn.Module, output: Path, record: dict) -> None:
    state = shippable_state(model)
    model.train()
    with atomic_path(output) as tmp:
        save_file(state, str(tmp), metadata={"dmlbench_record": json.dumps(record)})
    write_json_atomic(output.with_suffix(".json"), record)
