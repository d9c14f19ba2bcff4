"""Parameter counts at the paper's shapes (ViT-S/16, CUB: 100 classes, E = 384), on meta."""

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.cost.params import table1_counts
from dmlbench.registry import table_row_methods

PAPER_BACKBONE = "vit_small_patch16_224"


@pytest.mark.parametrize(
    "method,opts,expected",
    [
        ("linear-probe", [], "187,008"),
        ("vpt", ["layers=12", "prompts=10"], "233,088"),
        ("adapter", ["layers=7", "bottleneck=256"], "1,567,744"),
        ("bitfit", [], "238,464"),
    ],
)
def test_params_gives_the_exact_table1_counts(method, opts, expected):
    args = ["params", "--method", method, "--dataset", "cub", "--backbone", PAPER_BACKBONE]
    for opt in opts:
        args += ["--opt", opt]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[2]
    assert row.split()[1] == expected


def test_table1_shows_paper_convention_beside_ours():
    table = table1_counts("vit_small_patch16_224.augreg_in21k", None, 100).set_index("row")
    # The in21k checkpoint's unused classifier: 384 × 21,843 weights + 21,843 biases.
    classes = 21_843
    classifier = 384 * classes + classes
    convention = table["paper-convention tunable"]
    assert convention["Full fine-tuning"] == 21_852_672 + classifier  # paper: 30.2M
    assert convention["BitFit"] == 238_464 + classes  # paper: 0.26M
    assert convention["Adapter (B) (L1, d256)"] == 435_712 + classes  # paper: 0.46M
    assert convention["VPT (L12, N10)"] == 233_088  # paper: 0.23M
    assert table.loc["Linear probe", "paper-convention %"] == pytest.approx(
        100 * 187_008 / (21_852_672 + classifier)
    )
    assert (table["tunable"] == table["formula"]).all()


def test_params_all_prints_every_row():
    result = CliRunner().invoke(main, ["params", "--all"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2 + len(table_row_methods())


@pytest.mark.parametrize(
    "opts,message",
    [
        (["layers=13"], "method vpt: layers=13 exceeds the backbone depth 12"),
        (["prompts=0"], "method vpt: prompts=0 must be ≥ 1"),
        (["layers=x"], "method vpt: option layers='x' must be an integer"),
        (
            ["init=ones"],
            "method vpt: option init='ones' must be one of "
            "xavier-normal, vpt-uniform, normal, zeros",
        ),
    ],
)
def test_bad_method_options_are_one_line(opts, message):
    args = ["params", "--method", "vpt", "--backbone", PAPER_BACKBONE]
    for opt in opts:
        args += ["--opt", opt]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"


def test_adapter_bottleneck_must_be_positive():
    args = ["params", "--method", "adapter", "--opt", "bottleneck=0"]
    result = CliRunner().invoke(main, [*args, "--backbone", PAPER_BACKBONE])
    assert result.exit_code == 2
    assert result.output.strip() == "error: method adapter: bottleneck=0 must be ≥ 1"


def test_rows_a_shallower_backbone_cannot_take_are_left_out_with_the_reason():
    from click.testing import CliRunner

    from dmlbench.cli import main

    result = CliRunner().invoke(main, ["params", "--all", "--dataset", "glyphs"])
    assert result.exit_code == 0, result.output
    assert (
        "Adapter (L7, d256): left out (method adapter: layers=7 exceeds the backbone depth 6)"
        in (result.output)
    )
    assert "Linear probe" in result.output and "Adapter (B) (L1, d256)" in result.output
