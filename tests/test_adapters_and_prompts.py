import math

import pytest
import timm
import torch

from dmlbench.adapters import BottleneckAdapter, add_parallel_adapter
from dmlbench.prompts import DeepPrompts, PromptInserter, init_prompts


def tiny_vit(depth=4, dim=32):
    torch.manual_seed(0)
    return timm.create_model(
        "vit_glyph_patch8_48", num_classes=0, embed_dim=dim, depth=depth, num_heads=2
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


@pytest.mark.parametrize("layers", [1, 3, 4])
def test_prompts_are_inserted_once_and_replaced_per_layer(layers):
    vit = tiny_vit(depth=4)
    lengths = record_block_inputs(vit)
    prompts = DeepPrompts(layers, 5, 32, "normal", 8, 0.0)
    inserter = PromptInserter(vit, layers)
    inserter.source = prompts
    seen = []
    vit.blocks[layers - 1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    vit(torch.randn(2, 3, 48, 48))
    # Forward hooks see the block's (prompted) input: 1 CLS + 5 prompts + 36 patches.
    assert lengths == [42] * 4
    assert torch.equal(seen[0][:, 1:6], prompts.tokens[layers - 1].expand(2, -1, -1))


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


def test_xavier_prompt_init_bound():
    tokens = torch.empty(12, 10, 384)
    init_prompts(tokens, "xavier", 16)
    bound = math.sqrt(6 / (3 * 16 * 16 + 384))
    assert tokens.abs().max() <= bound and tokens.abs().max() > 0.9 * bound
