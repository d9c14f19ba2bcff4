import re
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
    with pytest.raises(UserError, match=r"'full-ft' is built into dmlbench \(dmlbench.methods"):

        @registry.register_method("full-ft")
        class Impostor(Method):
            def attach(self, model):
                self.freeze(model)


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
    source = (Path(registry.__file__).parent / "train" / "trainer.py").read_text()
    for name in registry.method_names():  # as a word: "oft" is in "soft"
        assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", source), (
            f"trainer.py mentions method {name!r}"
        )
    for word in ("full_ft", "linear_probe", "full-ft", "linear-probe", "Probe", "FullFineTuning"):
        assert word not in source


def _dist(site, name: str, group: str, entries: dict[str, str]) -> None:
    dist = site / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (dist / "entry_points.txt").write_text(f"[{group}]\n{lines}")


def test_a_plugin_that_fails_to_import_is_one_line_and_the_rest_works(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "broken_plugin.py").write_text("import a_module_nobody_installed\n")
    _dist(tmp_path, "broken-plugin", "dmlbench.methods", {"broken": "broken_plugin"})
    (tmp_path / "broken_data.py").write_text("raise RuntimeError('no data here')\n")
    _dist(tmp_path, "broken-data", "dmlbench.datasets", {"nodata": "broken_data"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken" not in registry.load_entry_point_methods()
    from dmlbench.entry_points import load_group

    assert load_group("dmlbench.datasets") == []
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "warning: plugin 'broken' of broken-plugin 0.1 (dmlbench.methods) failed to import and "
        "is skipped: ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    )
    assert "broken-data 0.1 (dmlbench.datasets)" in lines[1] and "no data here" in lines[1]
    assert "linear-probe" in registry.method_names()  # everything else still works


def test_two_plugins_claiming_one_name_stop_with_one_line_naming_both(tmp_path):
    import os
    import subprocess

    for name in ("first", "second"):
        (tmp_path / f"{name}_plugin.py").write_text(
            "from dmlbench.plugin import Method, register_method\n"
            "@register_method('twin')\n"
            f"class {name.title()}(Method):\n"
            "    description = 'a twin'\n"
            "    def attach(self, model):\n"
            "        self.freeze(model)\n"
        )
        _dist(tmp_path, f"{name}-plugin", "dmlbench.methods", {"twin": f"{name}_plugin"})
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "dmlbench", "methods"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "error: method name 'twin' is claimed by both first_plugin.First and "
        "second_plugin.Second; uninstall one of the two plugins, or rename one"
    )
