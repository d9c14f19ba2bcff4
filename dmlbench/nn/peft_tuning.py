"""What every method built on HF peft shares: which of a timm ViT block's linear layers
it adapts, how peft is attached, how the adapters are merged for evaluation, and
how the tunable count follows from the backbone's layer shapes.

timm fuses a block's query, key and value projections into one ``attn.qkv`` linear
(D → 3D). peft adapts that layer as one (peft issue 691): a low-rank update of
the fused weight is one rank-r update shared by q, k and v (the LoRA paper adapts
q and v separately), a scaling vector scales all 3D outputs ((IA)³'s paper scales
keys and values only). Every method here adapts the fused layer, as LoRA already
did; what that changes per method is in docs/fidelity.md ("the method zoo").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from peft import inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer

from dmlbench.nn.model import EmbeddingModel, ModelSpec

# Linear layers of a timm ViT block, per target set (paths inside the block).
TARGETS: dict[str, tuple[str, ...]] = {
    "qkv": ("attn.qkv",),
    "attn": ("attn.qkv", "attn.proj"),
    "all": ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
}
TARGET_HELP = (
    "qkv (timm's fused q, k, v); attn = qkv and the attention's output; all = also the MLP"
)


def block_regex(paths: Iterable[str]) -> str:
    """A peft ``target_modules`` regex for these paths in every block (never e.g.
    ``patch_embed.proj``, which a plain name such as "proj" would also match)."""
    layers = "|".join(path.replace(".", r"\.") for path in paths)
    return rf".*blocks\.\d+\.({layers})"


def attach_peft(model: EmbeddingModel, config, tuner: type | None = None) -> None:
    """Freeze the backbone, let peft add its adapters (which alone train there), and
    train the head and the proxies as every method does.

    ``tuner``: peft's tuner class, for methods whose layers share state held by the
    tuner (VeRA's random matrices), which ``inject_adapter_in_model`` refuses; the
    tuner adapts the backbone in place, and its layers keep the shared buffers."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    if tuner is None:
        inject_adapter_in_model(config, model.backbone)
    else:
        tuner(model.backbone, config, "default")
    for p in model.head.parameters():
        p.requires_grad_(True)
    model.proxies.requires_grad_(True)


def merged_copy(model: EmbeddingModel) -> EmbeddingModel:
    """A copy with every peft adapter merged into its base weight, so inference costs
    what the backbone costs. The trained model is never merged in place: merging and
    unmerging would not give the frozen weights back bit for bit."""
    merged = copy.deepcopy(model)
    for module in merged.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    return merged


def per_layer(spec: ModelSpec, paths: Iterable[str], count: Callable[[str, int, int], int]) -> int:
    """Σ count(path, in, out) over the targeted linear layers of every block, read from
    the pretrained backbone's layout (ModelSpec.block_linears)."""
    wanted = set(paths)
    return sum(count(path, i, o) for block in spec.block_linears
               for path, i, o in block if path in wanted)  # fmt: skip
