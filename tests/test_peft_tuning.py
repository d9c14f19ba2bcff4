"""dmlbench/nn/peft_tuning.py and the peft-based methods: what adapting timm's fused
qkv means for each, counted and checked on the tiny ViT (D = 32, 12 blocks)."""

from __future__ import annotations

import re

import torch

from dmlbench.nn.peft_tuning import TARGETS, block_regex
from dmlbench.registry import get_method
from dmlbench.testing import batches, prepared, trainer_for

D = 32


def test_the_target_regex_matches_the_blocks_layers_only():
    pattern = re.compile(block_regex(TARGETS["all"]))
    assert pattern.fullmatch("blocks.3.attn.qkv") and pattern.fullmatch("blocks.11.mlp.fc2")
    assert not pattern.fullmatch("patch_embed.proj")
    assert not pattern.fullmatch("blocks.3.attn.qkv.base_layer")


def test_lora_on_the_fused_qkv_is_one_rank_r_update_shared_by_q_k_and_v():
    """peft adapts timm's fused D → 3D layer as one: after training, the merged
    update has rank ≤ r over all three projections (the LoRA paper gives q and v a
    rank-r update each), and it reaches q, k and v alike."""
    model, method = prepared(get_method("lora"), {"rank": 2, "targets": "qkv"})
    before = model.backbone.blocks[0].attn.qkv.base_layer.weight.detach().clone()
    trainer_for(model, method, "adamw").train_epoch(batches(3), epoch=1)
    merged = method.inference_model(model)
    delta = merged.backbone.blocks[0].attn.qkv.base_layer.weight.detach() - before
    # float32 rounding of W + ΔW − W is full-rank noise ~1e-7 of ΔW: a relative tolerance
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-4).item() == 2
    for part in delta.chunk(3, dim=0):  # q, k, v
        assert part.abs().max() > 0


def test_ia3_scales_the_fused_qkv_outputs_and_the_mlp_inner_activation():
    """(IA)³'s vectors: 3D on qkv's outputs (queries too: the paper scales keys and
    values only) and 4D on fc2's input, so 7D per block; each starts at 1."""
    model, method = prepared(get_method("ia3"), {})
    block = model.backbone.blocks[0]
    qkv, fc2 = block.attn.qkv.ia3_l["default"], block.mlp.fc2.ia3_l["default"]
    assert qkv.numel() == 3 * D and fc2.numel() == 4 * D
    assert torch.equal(qkv, torch.ones_like(qkv)) and torch.equal(fc2, torch.ones_like(fc2))
    probe = get_method("linear-probe")().tunable_formula(model.spec)
    assert method.tunable_formula(model.spec) - probe == 12 * 7 * D


def test_vera_shares_one_frozen_random_pair_across_layers():
    model, method = prepared(get_method("vera"), {"rank": 4, "targets": "attn"})
    qkv, proj = model.backbone.blocks[0].attn.qkv, model.backbone.blocks[5].attn.proj
    assert qkv.vera_A["default"].data_ptr() == proj.vera_A["default"].data_ptr()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any("vera_A" in n or "vera_B" in n for n in trainable)
    # λ_d (r) and λ_b (out) per layer: qkv (3D) and proj (D) in 12 blocks
    probe = get_method("linear-probe")().tunable_formula(model.spec)
    assert method.tunable_formula(model.spec) - probe == 12 * ((4 + 3 * D) + (4 + D))


def test_oft_counts_the_block_size_peft_adjusts_to():
    """A block of 12 does not divide D = 32; peft uses 8 (4 blocks of 28 entries)."""
    model, method = prepared(get_method("oft"), {"block_size": 12, "targets": "qkv"})
    probe = get_method("linear-probe")().tunable_formula(model.spec)
    assert method.tunable_formula(model.spec) - probe == 12 * 4 * (8 * 7 // 2)
    assert model.backbone.blocks[0].attn.qkv.oft_R["default"].weight.shape == (4, 28)


def test_oft_is_orthogonal_with_the_exact_cayley_transform_and_only_near_it_with_the_series():
    """At ‖S‖₂ = 0.60 (training on glyphs reaches 0.8), peft's default 5-term series gives
    block 0's qkv an R with ‖RᵀR − I‖₂ = 0.24 (oft_orthogonality.py's helpers, same S);
    cayley=exact keeps R orthogonal, and either merged model embeds as the unmerged one."""
    images = batches(1)[0][0][:4]
    errors = {}
    for cayley in ("neumann", "exact"):
        model, method = prepared(get_method("oft"), {"block_size": 8, "cayley": cayley})
        rotation = model.backbone.blocks[0].attn.qkv.oft_R["default"]
        with torch.no_grad():
            s = torch.randn(rotation.weight.shape, generator=torch.Generator().manual_seed(0))
            rotation.weight.copy_(0.12 * s)
            r = rotation.get_weight().double()
        errors[cayley] = torch.linalg.matrix_norm(r.T @ r - torch.eye(D), ord=2).item()
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(method.inference_model(model)(images), model(images),
                                       atol=1e-5, rtol=1e-4)  # fmt: skip
    assert errors["exact"] < 1e-5 and errors["neumann"] > 0.2
