"""Train and test transforms; size and normalisation follow the backbone."""

from __future__ import annotations

from dataclasses import dataclass

from torchvision import transforms as T


@dataclass(frozen=True)
class TransformSpec:
    """What differs between benchmarks: flips (wrong for glyphs), crop range, resize ratio."""

    flip: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    resize_ratio: float = 256 / 224  # test: Resize(size·ratio) → CenterCrop(size)


def train_transform(spec: TransformSpec, size: int, mean, std):
    steps = [T.RandomResizedCrop(size, scale=spec.crop_scale)]
    if spec.flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def test_transform(spec: TransformSpec, size: int, mean, std):
    return T.Compose(
        [
            T.Resize(round(size * spec.resize_ratio)),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
