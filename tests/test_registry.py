import sys
import textwrap
from pathlib import Path

import pytest

from dmlbench import registry
from dmlbench.errors import UserError
from dmlbench.method import Method


def test_builtins_are_discovered():
    assert {"full-ft", "linear-probe"} <= set(registry.method_names())


def test_unknown_method_lists_valid_names():
    with pytest.raises(UserError, match="unknown method 'nope'; valid methods: .*linear-probe"):
        registry.get_method("nope")


def test_name_clash_is_refused():
    with pytest.raises(ValueError, match="taken"):

        @registry.register_method("full-ft")
        class Impostor(Method):
            pass


def test_entry_point_plugin_is_loaded(tmp_path, monkeypatch):
    """A pip-installed package's entry point registers its method when discovered."""
    package = tmp_path / "toy_plugin.py"
    package.write_text(
        textwrap.dedent(
            """
            from dmlbench.method import Method
            from dmlbench.registry import register_method

            @register_method("toy-head-only")
            class HeadOnly(Method):
                description = "toy plugin: only the head's projection trains"

                def attach(self, model):
                    self.freeze(model)
                    self.unfreeze(model.head.proj)
            """
        )
    )
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dmlbench.methods]\ntoy-head-only = toy_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "toy-head-only" in registry.load_entry_point_methods()
        cls = registry.get_method("toy-head-only")
        assert cls.name == "toy-head-only" and cls.description.startswith("toy plugin")
    finally:
        registry._METHODS.pop("toy-head-only", None)
        sys.modules.pop("toy_plugin", None)


def test_trainer_module_names_no_method():
    source = (Path(registry.__file__).parent / "trainer.py").read_text()
    for name in registry.method_names():
        assert name not in source, f"trainer.py mentions method {name!r}"
    for word in ("full_ft", "linear_probe", "full-ft", "linear-probe", "Probe", "FullFineTuning"):
        assert word not in source
