"""Backbones: timm ViTs by name, offline weights, and the embedding model.

The shipped glyph backbone is registered with timm (``@register_model``,
pretrained config as data), so ``timm.create_model("vit_glyph_patch8_48",
pretrained=True)`` works anywhere dmlbench is imported.
"""

from __future__ import annotations

import pickle
from functools import partial
from importlib import resources
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config
from timm.layers import PatchEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn
from torch.nn.utils import fuse_conv_bn_weights

from dmlbench.assets import (
    GLYPH_BACKBONE,
    GLYPH_V1_BACKBONE,
    GLYPH_V2_BACKBONE,
    GLYPH_V2_WEIGHTS_FILE,
    GLYPH_WEIGHTS_FILE,
)
from dmlbench.errors import UserError

GLYPH_BACKBONE_KWARGS = dict(img_size=48, patch_size=8, embed_dim=192, depth=6, num_heads=3)
GLYPH_STEM_CHANNELS = (32, 64, 128)


def shipped_weights_path(benchmark: str = "glyphs-v1") -> Path:
    """The shipped weights pretrained for ``glyphs-v1`` or for ``glyphs``."""
    name = GLYPH_V2_WEIGHTS_FILE if benchmark == "glyphs" else GLYPH_WEIGHTS_FILE
    return Path(str(resources.files("dmlbench.assets").joinpath(name)))


def _glyph_cfg(file: Path) -> dict:
    return dict(file=str(file), num_classes=0, input_size=(3, 48, 48), crop_pct=1.0,
                interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                first_conv="patch_embed.proj.0", classifier="head", license="mit")  # fmt: skip


# Two pretrained tags of one architecture: glyphs-v1's (the default tag, so
# timm.create_model("vit_glyph_patch8_48", pretrained=True) stays what it was)
# and glyphs'.
default_cfgs = generate_default_cfgs(
    {
        GLYPH_V1_BACKBONE: _glyph_cfg(shipped_weights_path("glyphs-v1")),
        GLYPH_V2_BACKBONE: _glyph_cfg(shipped_weights_path("glyphs")),
    }
)


class ConvStemEmbed(PatchEmbed):
    """Patch embedding by three stride-2 3×3 convolutions and a 1×1 projection.

    Why not timm's linear patchify: a ViT trained from scratch on ~30k glyph
    images on 2 CPU cores barely leaves its initial plateau (train top-1 3.5%
    after 8 epochs); a convolutional stem ("early convolutions help
    transformers see better", Xiao et al. 2021) roughly doubles early
    progress at the same cost. The token grid is the same as patch 8.

    ``norm=True`` puts BatchNorm after each convolution; that is only for
    pretraining: ``fold_stem_norms`` merges them into the convolutions, so the
    shipped backbone has no BatchNorm (whose running statistics would change
    under a "frozen" backbone in train mode).
    """

    def __init__(self, *args, norm: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if self.patch_size != (8, 8):
            raise ValueError("ConvStemEmbed downsamples by exactly 8 (three stride-2 convs)")
        layers: list[nn.Module] = []
        channels = (self.proj.in_channels, *GLYPH_STEM_CHANNELS)
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(channels[-1], self.proj.out_channels, 1))
        self.proj = nn.Sequential(*layers)


def fold_stem_norms(normed: ConvStemEmbed, plain: ConvStemEmbed) -> None:
    """Copy a BatchNorm stem into a norm-free one (each conv with its BatchNorm folded
    in by torch's ``fuse_conv_bn_weights``: conv(x)·γ/σ + (β − μ·γ/σ))."""
    convs = [m for m in normed.proj if isinstance(m, nn.Conv2d)]
    norms = [m for m in normed.proj if isinstance(m, nn.BatchNorm2d)]
    targets = [m for m in plain.proj if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv, bn, target in zip(convs, norms + [None], targets, strict=True):
            weight, bias = conv.weight, conv.bias
            if bn is not None:  # the final 1×1 projection has no norm
                weight, bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                    bn.weight, bn.bias,
                )  # fmt: skip
            target.weight.copy_(weight)
            target.bias.copy_(bias)


@register_model
def vit_glyph_patch8_48(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT (width 192, depth 6, 3 heads, conv stem) on 48² glyphs, from ``dmlbench pretrain``.

    ``stem_norm=True`` builds the pretraining variant (see ConvStemEmbed).
    """
    stem = partial(ConvStemEmbed, norm=kwargs.pop("stem_norm", False))
    return build_model_with_cfg(
        VisionTransformer,
        GLYPH_BACKBONE,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        **{**GLYPH_BACKBONE_KWARGS, "embed_layer": stem, **kwargs},
    )


def hub_unreachable_reason(repo_id: str, timeout: float = 10.0) -> str | None:
    """Why the Hugging Face hub cannot serve ``repo_id`` now (None: it can).

    Asked through huggingface_hub's own client, so ``HF_HUB_OFFLINE``, proxies
    (``HTTPS_PROXY``), mirrors (``HF_ENDPOINT``) and tokens apply exactly as
    for the download itself; one metadata request with a timeout fails in
    seconds where timm's download would retry for ~47 s.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "model.safetensors"), timeout=timeout)
    except Exception as e:  # noqa: BLE001 - offline mode, transport, HTTP: all mean "not now"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return f"{type(e).__name__}: {first}"
    return None


def create_backbone(name: str, weights: str | None, image_size: int | None = None) -> nn.Module:
    """A timm model that returns the CLS token after the final norm.

    ``weights``: a file (.safetensors/.pth), ``"pretrained"`` for timm's own
    source (the shipped file for the glyph backbone), or ``None`` for random init.
    """
    if not timm.is_model(name):
        raise UserError(
            f"unknown backbone {name!r}; use a timm ViT name such as "
            f"{GLYPH_BACKBONE} or vit_small_patch16_224 (see timm.list_models('vit_*'))"
        )
    kwargs = dict(num_classes=0, global_pool="token")
    if image_size is not None:  # timm resizes the position embedding to the new grid
        patch = _patch_size(name)
        if image_size < 1 or image_size % patch:
            raise UserError(
                f"--image-size {image_size}: the patch size {patch} of {name} does not divide "
                f"it; use a multiple of {patch}"
            )
        kwargs["img_size"] = image_size
    if weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights != "pretrained":
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"--weights {weights}: no such file; give a .safetensors or .pth file")
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise UserError(
                f"--weights {weights}: not a weights file; give a .safetensors file (or .pth, "
                "read by timm as data only, with torch.load(weights_only=True))"
            )
        # custom_load=False: timm would otherwise expect its .npz format for
        # some in21k checkpoints; a user's file is a plain state dict.
        overlay = dict(file=str(path), custom_load=False)
        try:
            return timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
            )
        except (pickle.UnpicklingError, RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:300]
            if isinstance(e, pickle.UnpicklingError) or "weights_only" in first:
                raise UserError(  # timm reads .pth with weights_only=True: nothing ran
                    f"--weights {weights}: holds objects beyond tensors, which dmlbench never "
                    "unpickles; save its state dict as .safetensors (safetensors.torch.save_file)"
                ) from None
            raise UserError(f"--weights {weights}: does not fit backbone {name}: {first}") from None
    return _create_pretrained(name, kwargs)


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _patch_size(name: str) -> int:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    size = getattr(getattr(model, "patch_embed", None), "patch_size", (1, 1))
    return int(size[0])


def _create_pretrained(name: str, kwargs: dict) -> nn.Module:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.file:
        if not Path(cfg.file).is_file():
            raise UserError(f"backbone {name}: its weights file {cfg.file} is missing")
        return timm.create_model(name, pretrained=True, **kwargs)
    # Hub weights: use the local Hugging Face cache when it has them, and probe
    # the hub before asking timm, so a machine without network fails in seconds
    # instead of in timm's ~47-second retry loop.
    cached = _hub_cached_file(cfg.hf_hub_id) if cfg is not None and cfg.hf_hub_id else None
    if cached is not None:
        overlay = dict(file=cached, custom_load=False)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    reason = hub_unreachable_reason(cfg.hf_hub_id) if cfg is not None and cfg.hf_hub_id else None
    if reason is not None:
        raise UserError(
            f"backbone {name}: pretrained weights are not in the local cache and the hub cannot "
            f"serve them ({reason}); download them elsewhere and pass --weights FILE "
            f"(.safetensors/.pth), or use --weights none for random init"
        )
    return timm.create_model(name, pretrained=True, **kwargs)


def _hub_cached_file(repo_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return found
    return None


def backbone_data_config(backbone: nn.Module) -> dict:
    """input_size, mean, std, … from the backbone's timm pretrained config."""
    return resolve_data_config(model=backbone)
