"""Train and test transforms; size and normalisation follow the backbone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import transforms as T


@dataclass(frozen=True)
class TransformSpec:
    """What differs between benchmarks: flips (wrong for glyphs), crop range, resize ratio."""

    flip: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    resize_ratio: float = 256 / 224  # test: Resize(size·ratio) → CenterCrop(size)
    ink: bool = False  # replace colours by an ink map (see InkMap)


class InkMap:
    """Grayscale distance from the background level, scaled to [0, 1], on 3 channels.

    For benchmarks where colour and polarity carry no class information by
    construction (the glyphs: random foreground and background colours). A
    ViT's CLS output at initialisation mostly reflects the mean colour, so
    without this the shape signal starts buried under colour noise and a
    small ViT trained from scratch on 2 CPU cores never leaves its plateau
    (measured: loss still at ln C after 400 steps with colours, falling after
    ~250 without).
    """

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        gray = image.mean(dim=0, keepdim=True)
        ink = (gray - gray.median()).abs()
        ink = ink / ink.max().clamp_min(1e-3)
        return ink.expand(3, -1, -1)


def train_transform(spec: TransformSpec, size: int, mean, std):
    steps = [T.RandomResizedCrop(size, scale=spec.crop_scale)]
    if spec.flip:
        steps.append(T.RandomHorizontalFlip())
    steps += _to_tensor(spec, mean, std)
    return T.Compose(steps)


def _to_tensor(spec: TransformSpec, mean, std) -> list:
    return [T.ToTensor(), *([InkMap()] if spec.ink else []), T.Normalize(mean, std)]


def test_transform(spec: TransformSpec, size: int, mean, std):
    return T.Compose(
        [
            T.Resize(round(size * spec.resize_ratio)),
            T.CenterCrop(size),
            *_to_tensor(spec, mean, std),
        ]
    )
