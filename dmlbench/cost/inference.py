"""What a trained method costs at test time and on disk.

* FLOPs per image of the embedding forward pass, counted by PyTorch's
  ``FlopCounterMode`` (matrix products, convolutions and attention; a
  multiply-add is 2 FLOPs; norms and activations are not counted) on a fake
  image, so counting ViT-L costs nothing.
* Extra tokens: how many more tokens the longest block sees than the plain
  backbone (VPT's prompts); LoRA/SSF-style methods that merge add none.
* Stored size: bytes of the tunable state as safetensors, what a user ships
  for the method on top of the public backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from safetensors.torch import save as safetensors_bytes
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dmlbench.nn.model import EmbeddingModel
from dmlbench.train.state import tunable_state


@dataclass(frozen=True)
class InferenceCost:
    flops_per_image: int
    tokens: int  # the longest sequence a block sees, per image
    extra_tokens: int  # over the plain backbone's
    stored_bytes: int

    def as_summary(self) -> dict:
        return {
            "gflops_per_image": self.flops_per_image / 1e9,
            "tokens": self.tokens,
            "extra_tokens": self.extra_tokens,
            "stored_mb": self.stored_bytes / 2**20,
        }


def _block_lengths(model: EmbeddingModel, image: torch.Tensor) -> tuple[int, int]:
    """(FLOPs, the longest token sequence entering a block) of one eval forward."""
    lengths: list[int] = []
    blocks = getattr(model.backbone, "blocks", [])
    hooks = [b.register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
             for b in blocks]  # fmt: skip
    # The math attention kernel, written as matrix products the counter sees: its
    # registry has no formula for the CPU's fused kernel (it would count 0), and the
    # fused kernels do the same arithmetic.
    try:
        with (
            sdpa_kernel(SDPBackend.MATH),
            FlopCounterMode(display=False) as counter,
            torch.no_grad(),
        ):
            model(image)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops(), max(lengths, default=0)


def inference_cost(model: EmbeddingModel) -> InferenceCost:
    """Counted on one fake image of the backbone's input size (no arithmetic done)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    was_training = model.training
    model.eval()
    size = tuple(getattr(model.backbone.patch_embed, "img_size", (224, 224)))
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            flops, tokens = _block_lengths(model, torch.empty(1, 3, *size))
    finally:
        model.train(was_training)
    prefix = getattr(model.backbone, "num_prefix_tokens", 1)
    patches = getattr(model.backbone.patch_embed, "num_patches", tokens - prefix)
    stored = len(safetensors_bytes({k: v.contiguous() for k, v in tunable_state(model).items()}))
    return InferenceCost(flops, tokens, tokens - prefix - patches, stored)
