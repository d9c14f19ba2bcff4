"""The README never lies: its commands are the ones CI runs, and its user commands work."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_install_and_test_commands():
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    blocks = [b.strip() for b in bash_blocks()]
    assert ci_lines == [blocks[0], blocks[-1]]
    assert blocks[0] == 'pip install -e ".[dev]"'


def test_readme_user_commands_run(tmp_path, isolated_cache):
    """Runs every bash block except install and tests, in a fresh folder, as a user would.

    This is the real default run (minutes on 2 cores): it checks the promise
    that it works offline and prints the metrics, and that the store loads.
    """
    blocks = [b.strip() for b in bash_blocks()][1:-1]
    blocks = [b for b in blocks if "\n" not in b]  # the plugin walkthroughs: their own test
    assert blocks, "README lost its user commands"
    env = {**os.environ, "DMLBENCH_CACHE": str(isolated_cache), "HF_HUB_OFFLINE": "1"}
    outputs = []
    for block in blocks:
        args = shlex.split(block)
        if args[0] == "python":
            args[0] = sys.executable
        done = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{block!r} failed:\n{done.stderr[-2000:]}"
        outputs.append(done.stdout)
    run_out, load_out = outputs[0], outputs[1]
    for needle in (
        "R@1",
        "R@2",
        "R@4",
        "R@8",
        "MAP@R",
        "R-precision",
        "tunable parameters",
        "peak memory",
        "time",
    ):
        assert needle in run_out
    assert "linear-probe" in load_out and "[1 rows x" in load_out  # one run, one row


@pytest.mark.parametrize("command", ["run", "methods", "datasets", "pretrain", "params"])
def test_every_command_has_help(command):
    from click.testing import CliRunner

    from dmlbench.cli import main

    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def _walkthrough(section: str) -> list[str]:
    text = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]
    return block.strip().splitlines()


def test_readme_plugin_sections_are_the_example_files():
    examples = {
        "Write a method": "plugin_method/dmlbench_cls_token/__init__.py",
        "Add a dataset": "plugin_dataset/dmlbench_digits/__init__.py",
    }
    for section, path in examples.items():
        text = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
        source = (ROOT / "examples" / path).read_text()
        assert code == source, f"README section {section!r} differs from examples/{path}"
        assert len(source.splitlines()) < 60


def test_readme_plugin_walkthroughs_install_list_and_run(tmp_path, isolated_cache):
    """The two plugins, installed from their folders as the README says (each into a
    throwaway folder rather than the environment: same metadata and entry points),
    then listed and used by the real command line in fresh processes."""
    site = tmp_path / "site"
    env = {**os.environ, "DMLBENCH_CACHE": str(isolated_cache), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(site)}  # fmt: skip
    outputs = {}
    for line in _walkthrough("Write a method") + _walkthrough("Add a dataset"):
        args = shlex.split(line)
        if args[:3] == ["pip", "install", "-e"]:
            args = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(ROOT / args[3])]  # fmt: skip
        elif args[0] == "dmlbench":
            args = [sys.executable, "-m", "dmlbench", *args[1:], *(
                ["--output", str(tmp_path / "runs")] if args[1] == "run" else [])]  # fmt: skip
        elif args[0] == "python":
            args[0] = sys.executable
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{line!r} failed:\n{done.stderr[-2000:]}"
        outputs[line] = done.stdout
    assert "cls-token" in outputs["dmlbench methods"]
    assert "digits" in outputs["dmlbench datasets"]
    params = outputs["dmlbench params --method cls-token --opt head=false"]
    assert "cls-token" in params and "38,784" in params  # CLS 384 + proxies 100 × 384
    run = outputs["dmlbench run --dataset digits --method cls-token"]
    assert "result (cls-token on digits" in run and "R@1" in run


def test_readme_method_example_keeps_the_contract():
    """The "write a method" code, run here in-process, passes check_method."""
    from dmlbench import registry
    from dmlbench.testing import check_method

    text = README.split("## Write a method\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        for options in ({}, {"head": False}, {"bias": True}):
            check_method(namespace["ClsToken"], options)
    finally:
        registry._METHODS.pop("cls-token", None)


def test_readme_other_commands_parse():
    """Every `dmlbench …` line in text blocks names real commands, options and values."""
    from dmlbench.cli import main

    lines = [
        line.split("  #")[0].strip()
        for block in re.findall(r"```text\n(.*?)```", README, flags=re.S)
        for line in block.splitlines()
        if line.startswith("dmlbench ")
    ]
    assert len(lines) >= 10
    for line in lines:
        args = shlex.split(line)[1:]
        command = main.get_command(None, args[0])
        assert command is not None, line
        command.make_context(args[0], args[1:])  # raises on an unknown option or bad value
