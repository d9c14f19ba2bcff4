"""The example plugin in examples/plugin_lora, loaded the way pip would expose it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

from dmlbench import registry
from dmlbench.cli import main
from dmlbench.testing import check_method

from .conftest import tiny_run_cli_args

EXAMPLE = Path(__file__).parents[1] / "examples" / "plugin_lora"


@pytest.fixture(scope="module")
def lora_installed(tmp_path_factory):
    """A dist-info made from the example's pyproject, as `pip install -e` would leave."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("site")
    dist = site / f"dmlbench_lora-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    points = project["entry-points"]["dmlbench.methods"]
    lines = "".join(f"{name} = {target}\n" for name, target in points.items())
    (dist / "entry_points.txt").write_text(f"[dmlbench.methods]\n{lines}")
    sys.path[:0] = [str(site), str(EXAMPLE)]
    try:
        assert "lora" in registry.load_entry_point_methods()
        yield registry.get_method("lora")
    finally:
        sys.path.remove(str(site))
        sys.path.remove(str(EXAMPLE))
        registry._METHODS.pop("lora", None)
        sys.modules.pop("dmlbench_lora", None)


@pytest.mark.parametrize("options", [{}, {"targets": "attn", "rank": 2, "bias": True}])
def test_lora_keeps_the_contract(lora_installed, options):
    """The same harness as every built-in method (peft renames what it wraps: the
    backbone's parameters are tracked by identity, so nothing is lost)."""
    check_method(lora_installed, options)


def test_lora_runs_one_epoch_from_the_cli(lora_installed, glyph_folder, tmp_path):
    args = [*tiny_run_cli_args(glyph_folder, tmp_path), "--method", "lora", "--opt", "rank=2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "R@1" in result.output and "lora" in result.output
