"""A plugin's mistakes are named where they happen: one line, exit 2, nothing lost.

Each faulty plugin of ``tests/faulty_plugins.py`` is registered on a copy of the
registries, so no test leaves a name behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench import registry
from dmlbench.cli import main
from dmlbench.data import spec as dataset_spec
from dmlbench.entry_points import NameTaken, PluginError
from dmlbench.testing import check_dataset, check_method

from . import faulty_plugins as faulty

ROOT = Path(__file__).parents[1]


@pytest.fixture
def registries(monkeypatch):
    """Copies of the method and dataset registries, for this test only."""
    registry.discover_methods()
    dataset_spec.dataset_names()
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    catalog = dataset_spec.DatasetCatalog(
        dict(dataset_spec.CATALOG.factories), dict(dataset_spec.CATALOG.prefixed)
    )
    monkeypatch.setattr(dataset_spec, "CATALOG", catalog)


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--backbone", "vit_glyph_patch8_48", "--weights", "none", "--epochs", "1",
            "--batch-size", "8", "--images-per-class", "2", "--output", str(tmp_path / "runs"),
            *extra]  # fmt: skip


def one_error_line(output: str) -> str:
    (line,) = [x for x in output.strip().splitlines() if x.startswith("error:")]
    return line


def test_a_parameter_autograd_never_reaches_stops_the_run(registries, glyph_folder, tmp_path):
    registry.register_method("gate-token")(faulty.GateToken)
    args = run_args(tmp_path, "--method", "gate-token", "--dataset", f"folder:{glyph_folder}")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert "method gate-token: 1 trainable parameter(s) got no gradient in the first step" in line
    assert "(gate)" in line and "register added parameters under model.backbone" in line
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "got no gradient" in summary["error"]
    with pytest.raises(AssertionError):  # the contract suite finds it too
        check_method(faulty.GateToken)


def test_a_formula_that_disagrees_with_the_count_stops_params_and_memory(registries):
    registry.register_method("wrong-formula")(faulty.WrongFormula)
    for command in (["params"], ["memory", "--batch", "4"]):
        args = [*command, "--method", "wrong-formula", "--dataset", "glyphs"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        line = one_error_line(result.output)
        # the glyph ViT: head 2·192 + 192·192 + 192, proxies 100 × 192
        counted, formula = 2 * 192 + 192 * 192 + 192 + 100 * 192, 192 * 192 + 192 + 100 * 192
        assert f"method wrong-formula {{'bias': False}}: {counted:,} parameters train" in line
        assert f"its tunable_formula gives {formula:,}" in line


def test_a_method_without_attach_or_with_a_misspelt_hook_is_refused_when_registered(registries):
    with pytest.raises(PluginError, match=r"tests\.faulty_plugins\.NoAttach.*no attach\(\) hook"):
        registry.register_method("no-attach")(faulty.NoAttach)
    with pytest.raises(PluginError, match=r"defines 'tunable_formular'.*mean 'tunable_formula'"):
        registry.register_method("misspelt")(faulty.MisspeltHook)
    assert "no-attach" not in registry.method_names()


def test_a_name_taken_by_a_built_in_says_which_is_built_in(registries):
    with pytest.raises(NameTaken) as caught:
        registry.register_method("vpt")(faulty.NormTuning)
    message = str(caught.value)
    assert "'vpt' is built into dmlbench (dmlbench.methods.vpt.VPT)" in message
    assert "the plugin tests.faulty_plugins.NormTuning must register another name" in message


def test_plugin_rows_sort_after_the_built_ins_whatever_their_order(registries):
    from dmlbench.method import TableRow

    early = type("Early", (faulty.NormTuning,), {"table_rows": (TableRow("Norms", order=-5),)})
    registry.register_method("norms")(early)
    labels = [row.label for _, row in registry.table_row_methods()]
    assert labels[-1] == "Norms" and labels[0] == "Full fine-tuning"


def test_norm_tuning_counts_its_norms_from_model_spec():
    """An honest LayerNorm-tuning formula needs the norms' shapes, not timm's layout."""
    check_method(faulty.NormTuning)
    check_method(faulty.NormTuning, {"bias": True})


def test_a_prefix_factory_that_is_no_dataset_spec_is_refused_and_datasets_works(registries):
    with pytest.raises(PluginError, match=r"register_dataset_prefix\('toy', …\).*not a Datas"):
        dataset_spec.register_dataset_prefix("toy", faulty.make_prefixed)
    result = CliRunner().invoke(main, ["datasets"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind,message", [
    (faulty.OverlappingClasses, "1 class(es) in both split 'train' and split 'test' (e.g. "
                                "'class_00'); DML scores unseen classes"),
    (faulty.MissingImage, "1 record(s) name a file that does not exist, e.g. "),
    (faulty.WrongClassCount, "num_train_classes says 5, its records have 4 training classes"),
])  # fmt: skip
def test_a_dataset_that_breaks_the_contract_stops_the_run_before_anything_is_written(
    registries, glyph_folder, tmp_path, kind, message
):
    broken = type(kind.__name__, (kind,), {"folder": glyph_folder, "__module__": kind.__module__})
    dataset_spec.register_dataset("broken")(broken)
    result = CliRunner().invoke(main, run_args(tmp_path, "--dataset", "broken"))
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result.output)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(AssertionError, match="dataset broken"):
        check_dataset("broken")


def test_the_example_plugins_pass_both_contracts(registries, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugin_method"))
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugin_dataset"))
    for module in ("dmlbench_cls_token", "dmlbench_digits"):
        sys.modules.pop(module, None)
        __import__(module)
    check_method("cls-token")
    check_method("cls-token", {"head": False, "bias": True})
    check_dataset("digits")
    good = type("Toy", (faulty.ToyDataset,), {"folder": None})
    assert good.num_train_classes  # the base toy is well formed once it has a folder
