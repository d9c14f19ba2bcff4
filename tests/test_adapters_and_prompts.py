import math

import pytest
import timm
import torch

from dmlbench.nn.adapters import BottleneckAdapter, add_parallel_adapter
from dmlbench.nn.backbone import GLYPH_BACKBONE  # importing it registers the model with timm
from dmlbench.nn.prompts import DeepPrompts, PromptInserter, init_prompts, xavier_normal_std


def tiny_vit(depth=4, dim=32):
    torch.manual_seed(0)
    return timm.create_model(
        GLYPH_BACKBONE, num_classes=0, embed_dim=dim, depth=depth, num_heads=2
    ).eval()


def test_adapter_parameter_count_matches_paper_shape():
    # vptsp.md: one adapter block with D = 384, d = 256 has 197,248 parameters.
    adapter = BottleneckAdapter(384, 256)
    assert sum(p.numel() for p in adapter.parameters()) == 197_248
    assert BottleneckAdapter.parameter_count(384, 256) == 197_248


def test_zero_initialised_adapter_leaves_the_block_unchanged():
    vit = tiny_vit()
    x = torch.randn(2, 37, 32)
    block = vit.blocks[0]
    expected = block(x)
    add_parallel_adapter(block, BottleneckAdapter(32, 8))
    assert torch.equal(block(x), expected)


def test_adapter_adds_scaled_branch_on_the_residual_stream():
    vit = tiny_vit()
    block = vit.blocks[0]
    x = torch.randn(2, 37, 32)
    adapter = BottleneckAdapter(32, 8, scale=0.5, up_init="normal")
    add_parallel_adapter(block, adapter)
    # Recompute by hand: x' = x + Attn(LN1 x); out = x' + MLP(LN2 x') + s·Up(ReLU(Down x')).
    mid = x + block.attn(block.norm1(x))
    by_hand = mid + block.mlp(block.norm2(mid)) + 0.5 * adapter.up(torch.relu(adapter.down(mid)))
    torch.testing.assert_close(block(x), by_hand, rtol=0, atol=1e-6)


def test_adapter_refuses_other_block_types():
    with pytest.raises(ValueError, match="timm's vision_transformer.Block"):
        add_parallel_adapter(torch.nn.Linear(2, 2), BottleneckAdapter(2, 1))


def record_block_inputs(vit):
    lengths = []
    for block in vit.blocks:
        block.register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
    return lengths


@pytest.mark.parametrize("carry", [False, True])
@pytest.mark.parametrize("layers", [1, 3, 4])
def test_prompts_are_inserted_once_and_replaced_per_layer(layers, carry):
    vit = tiny_vit(depth=4)
    lengths = record_block_inputs(vit)
    prompts = DeepPrompts(layers, 5, 32, "normal", 8, 0.0)
    inserter = PromptInserter(vit, layers, carry=carry)
    inserter.source = prompts
    seen = []
    vit.blocks[layers - 1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    vit(torch.randn(2, 3, 48, 48))
    # Forward hooks see the block's input: 1 CLS + 5 prompts + 36 patches while prompted;
    # after the last prompted block the prompts are dropped (the VPTSP reference) or
    # their outputs carry on (the VPT authors' code).
    assert lengths == [42] * layers + [42 if carry else 37] * (4 - layers)
    assert torch.equal(seen[0][:, 1:6], prompts.tokens[layers - 1].expand(2, -1, -1))


def reference_style_forward(vit, images, prompts):
    """The VPTSP reference's placement, by hand: each block's prompts *before* the CLS
    token, its outputs at those positions cut off after the block."""
    x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
    for i, block in enumerate(vit.blocks):
        p = prompts[i].unsqueeze(0).expand(len(x), -1, -1) if i < len(prompts) else x[:, :0]
        x = block(torch.cat([p, x], dim=1))[:, p.shape[1] :]
    return vit.norm(x)[:, 0]


def test_prompt_position_does_not_matter_a_block_treats_tokens_as_a_set():
    vit = tiny_vit(depth=4)
    prompts = DeepPrompts(3, 5, 32, "normal", 8, 0.0, taper=2)  # 5, 3, 1 tokens
    inserter = PromptInserter(vit, 3)
    inserter.source = prompts
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ours = vit(images)
        with inserter.use(None):  # the hand-written forward places the prompts itself
            reference = reference_style_forward(vit, images, list(prompts.tokens))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_tapered_prompts_shrink_per_block_and_count_what_is_used():
    vit = tiny_vit(depth=4)
    lengths = record_block_inputs(vit)
    prompts = DeepPrompts(4, 5, 32, "normal", 8, 0.0, taper=2)
    PromptInserter(vit, 4).source = prompts
    vit(torch.randn(2, 3, 48, 48))
    assert prompts.counts == [5, 3, 1, 0]
    assert lengths == [37 + 5, 37 + 3, 37 + 1, 37]
    assert sum(p.numel() for p in prompts.parameters()) == 9 * 32
    assert DeepPrompts.parameter_count(4, 5, 32, taper=2) == 9 * 32


def test_prompt_source_can_be_swapped_and_removed():
    vit = tiny_vit(depth=2)
    lengths = record_block_inputs(vit)
    inserter = PromptInserter(vit, 2)
    per_image = torch.randn(3, 2, 4, 32)  # batch × layers × tokens × D
    with inserter.use(lambda layer, batch: per_image[:, layer]):
        vit(torch.randn(3, 3, 48, 48))
    vit(torch.randn(3, 3, 48, 48))  # no source: the plain ViT
    assert lengths == [41, 41, 37, 37]


def test_prompt_layers_are_validated():
    with pytest.raises(ValueError, match="between 1 and the depth 4"):
        PromptInserter(tiny_vit(depth=4), 5)


def test_vpt_uniform_prompt_init_bound():
    tokens = torch.empty(12, 10, 384)
    init_prompts(tokens, "vpt-uniform", 16)
    bound = math.sqrt(6 / (3 * 16 * 16 + 384))
    assert tokens.abs().max() <= bound and tokens.abs().max() > 0.9 * bound


@pytest.mark.parametrize("rows,tokens,dim", [(1, 10, 384), (100, 3, 384), (100, 3, 192)])
def test_xavier_normal_init_is_torchs_on_the_references_shapes(rows, tokens, dim):
    """The reference calls xavier_normal_ on (1, N, D) shared and (C, N_c, D) class
    prompts per block: std 0.022 (ViT-S shared), 0.007 (ViT-S, CUB's 100 classes)."""
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(rows, tokens, dim))
    expected = math.sqrt(2.0 / (fan_in + fan_out))
    assert xavier_normal_std(rows, tokens, dim) == pytest.approx(expected, rel=1e-12)
    torch.manual_seed(0)
    drawn = torch.empty(rows, 20 * tokens, dim)
    init_prompts(drawn, "xavier-normal", 16, rows=rows, fan_tokens=tokens)
    assert drawn.std().item() == pytest.approx(expected, rel=0.02)
    assert {(1, 10, 384): 0.0218, (100, 3, 384): 0.0071}.get((rows, tokens, dim), expected) == (
        pytest.approx(expected, abs=5e-5)
    )


def test_vpt_shallow_rows_are_prompts_before_block_one_carried_through_every_block():
    """The VPT paper's shallow variant: [CLS, prompts, patches] enters block 1 and the
    prompts' outputs stay in the sequence to the last block; written out by hand."""
    from dmlbench.registry import get_method, table_row_methods
    from dmlbench.testing import tiny_model

    shallow = {row.label: row.options for name, row in table_row_methods() if name == "vpt"}
    options = shallow["VPT-shallow (N10)"]
    model = tiny_model()
    method = get_method("vpt").from_values(options)
    method.setup(model)
    vit = model.backbone
    tokens = vit.vpt_prompts.tokens
    assert len(tokens) == 1 and tokens[0].shape == (10, 32)
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ours = vit(images)
        with vit.vpt_inserter.use(None):
            x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
            x = torch.cat([x[:, :1], tokens[0].expand(2, -1, -1), x[:, 1:]], dim=1)
            by_hand = vit.norm(vit.blocks(x))[:, 0]
    torch.testing.assert_close(ours, by_hand, rtol=1e-5, atol=1e-5)
    assert (
        method.tunable_formula(model.spec)
        - get_method("linear-probe")().tunable_formula(model.spec)
        == 10 * 32
    )  # N × D: one block's prompts
