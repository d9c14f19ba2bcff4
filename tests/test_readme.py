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


def test_readme_method_example_keeps_the_contract():
    """The "write your own method" code registers a method that trains and counts right."""
    from dmlbench import registry
    from dmlbench.meter import count_parameters

    from .test_contract import prepared, train

    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    try:
        exec(compile(code, "README.md", "exec"), {})
        for bias in (False, True):
            model, method, spec = prepared("cls-token", bias)
            assert count_parameters(model).tunable == method.tunable_formula(spec)
            train(model, method)
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
