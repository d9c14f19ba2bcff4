"""Pretraining the shipped glyph backbone (the "ImageNet-21k" of the glyph benchmark).

Supervised classification on the ``pretrain`` glyph classes only, which are
disjoint from the benchmark's train and test classes. The result is saved as
safetensors (backbone without classifier) with metadata saying what made it:
timm config, command, seed, data fingerprint, epochs and final accuracy.
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
from dmlbench.nn.backbone import GLYPH_BACKBONE, GLYPH_BACKBONE_KWARGS, fold_stem_norms
from dmlbench.progress import progress
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
    history = []
    start = time.time()
    for epoch in range(config.epochs):
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
            "data_fingerprint": fingerprint_id(json.loads((part / "fingerprint.json").read_text())),
            "pretrain_classes": len(dataset.classes),
            "pretrain_images": len(dataset),
            "history": history,
            "seconds": round(time.time() - start, 1),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
        }
        save_backbone(model, output, record)
    return record


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
