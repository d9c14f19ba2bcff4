"""The ``dmlbench`` command line: thin click commands that parse, call and print."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import click

from dmlbench.cli_options import config_options
from dmlbench.config import RunConfig
from dmlbench.errors import UserError
from dmlbench.train.pretrain_config import PretrainConfig


class DmlbenchGroup(click.Group):
    """Turns bad input (ours or click's) into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
        except click.UsageError as e:
            where = f"dmlbench {e.ctx.info_name}: " if e.ctx is not None else ""
            click.echo(f"error: {where}{e.format_message()}", err=True)
        ctx.exit(2)


@click.group(cls=DmlbenchGroup)
def main() -> None:
    """dmlbench: parameter-efficient fine-tuning of ViTs for deep metric learning."""


@main.command()
@config_options(PretrainConfig, unset_is_none=False)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to save the .safetensors (default: the packaged asset that dmlbench ships).",
)
def pretrain(output, **settings) -> None:
    """Pretrain the glyph backbone on the 'pretrain' glyph classes (disjoint from train/test)."""
    from dmlbench.nn.backbone import shipped_weights_path
    from dmlbench.options import build_options
    from dmlbench.train.pretrain import pretrain as run_pretrain

    config = build_options(PretrainConfig, settings, owner="pretrain")
    output = output or shipped_weights_path(config.benchmark)
    command = "dmlbench " + shlex.join(sys.argv[1:])
    record = run_pretrain(config, output, command)
    last = record["history"][-1]
    click.echo(
        f"saved {output} ({record['pretrain_classes']} classes, "
        f"{record['pretrain_images']} images, "
        f"final train top-1 {last['train_top1']:.3f}, {record['seconds']:.0f} s)"
    )


@main.command()
@config_options(RunConfig, exclude=("method_options",))
@click.option(
    "--opt",
    "opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="A method option, repeatable (see `dmlbench methods --verbose`).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML file of run-config keys; flags override it.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="RUN_DIR",
    help="Continue a killed run from its newest checkpoint, with its stored config.",
)
def run(config_file, opts, resume_dir, **flags) -> None:
    """Train one method on one dataset and evaluate it on the unseen classes."""
    from dmlbench.config import make_config
    from dmlbench.options import parse_key_values
    from dmlbench.run.execute import execute
    from dmlbench.train.trainer import NonFiniteLoss

    flags["method_options"] = parse_key_values(opts)
    if resume_dir is not None:
        config = _resume_config(resume_dir, config_file, flags)
        if config is None:
            return
    else:
        config = make_config(config_file, flags)
    try:
        result = execute(config, echo=click.echo, resume=resume_dir)
    except NonFiniteLoss as e:  # a training failure, not bad input: exit 1, one line
        where = getattr(e, "run_dir", "the run directory")
        raise click.ClickException(f"run stopped: {e}; {where} is marked failed") from None
    if result.main_process:
        click.echo(format_summary(result.summary, result.run_dir))


def _resume_config(run_dir: Path, config_file, flags: dict):
    """The stored config of ``run_dir``, or None if that run already finished."""
    import json

    from dmlbench.config import make_config

    given = [k for k, v in flags.items() if v not in (None, {})]
    if config_file is not None or given:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in given) or "--config"
        raise UserError(
            f"--resume continues {run_dir} exactly as its config.yaml says; drop {names}"
        )
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: no config.yaml there; is it a run directory?")
    try:
        status = json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        status = None  # killed before its first summary: start it again from its config
    if status == "finished":
        click.echo(f"{run_dir} has already finished; nothing to resume")
        return None
    return make_config(run_dir / "config.yaml", {})


def format_summary(summary: dict, run_dir: Path) -> str:
    m, p, mem, t = summary["metrics"], summary["params"], summary["memory"], summary["time"]
    recalls = "  ".join(
        f"R@{k.split('@')[1]} {v:.4f}" for k, v in m.items() if k.startswith("recall@")
    )
    lines = [
        f"result ({summary['method']} on {summary['dataset']}, unseen "
        f"{'validation' if summary.get('split') == 'val' else 'test'} classes, "
        f"{m['queries']} queries)",
        f"  {recalls}",
        f"  MAP@R {m['map@r']:.4f}  R-precision {m['r_precision']:.4f}  "
        f"(paper-style MAP@R {m['map@r_paper']:.4f})",
        f"  tunable parameters {p['tunable']:,} of {p['total']:,} "
        f"({p['tunable_pct_of_backbone']:.2f}% of the backbone's {p['backbone']:,})",
        f"  peak memory {mem['peak_mb']:.0f} MB, {mem['peak_kind']}"
        + (
            f"; NVML {mem['nvml_peak_used_mb']:.0f} MB"
            if mem.get("nvml_peak_used_mb") is not None
            else f"; host RSS growth {mem['rss_growth_mb']:.0f} MB"
        ),
        f"  time {t['wall_seconds']:.0f} s; train {t['train_images_per_s']:.0f} img/s, "
        f"eval {t['eval_images_per_s']:.0f} img/s",
        f"  stored in {run_dir}",
    ]
    return "\n".join(lines)


@main.command()
@click.option("--method", default="linear-probe", show_default=True, help="Method name.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="A method option.")
@click.option(
    "--dataset", default="cub", show_default=True, help="Sets the number of training classes."
)
@click.option("--backbone", default=None, help="timm model name. [default: the dataset's]")
@click.option("--embedding-dim", type=click.IntRange(min=1), default=None)
@click.option("--all", "all_rows", is_flag=True, help="The whole Table-1 set as one table.")
def params(method, opts, dataset, backbone, embedding_dim, all_rows) -> None:
    """Tunable / total parameters of a method, without images or weights (meta device)."""
    import pandas as pd

    from dmlbench.cost.params import count_row, format_table, table1_counts
    from dmlbench.data.spec import get_dataset
    from dmlbench.options import parse_key_values
    from dmlbench.registry import get_method

    benchmark = get_dataset(dataset)
    backbone = backbone or benchmark.recipe.backbone
    if all_rows:
        if opts or method != "linear-probe":
            raise click.UsageError("--all prints the Table-1 set; drop --method/--opt")
        skipped: list[str] = []
        table = table1_counts(
            backbone, embedding_dim, benchmark.num_train_classes, benchmark.recipe, skipped
        )
    else:
        given = parse_key_values(opts)
        get_method(method).from_values(given)  # the user's options, checked on their own
        recipe = benchmark.recipe.defaults_for(method)["method_options"]  # e.g. Cars' prompt layout
        chosen = get_method(method).from_values({**recipe, **given})
        table = pd.DataFrame(
            [count_row(chosen, backbone, embedding_dim, benchmark.num_train_classes)]
        )
    click.echo(f"{backbone} on {benchmark.name}: {benchmark.num_train_classes} training classes")
    click.echo(format_table(table))
    for line in skipped if all_rows else ():
        click.echo(line)


@main.command()
@click.option("--method", default="linear-probe", show_default=True, help="Method name.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="A method option.")
@click.option(
    "--dataset",
    default="cub",
    show_default=True,
    help="Sets the number of training classes, and the defaults below from its recipe.",
)
@click.option("--backbone", default=None, help="timm model name. [default: the dataset's]")
@click.option("--embedding-dim", type=click.IntRange(min=1), default=None)
@click.option("--batch", type=click.IntRange(min=1), default=None, help="[default: the recipe's]")
@click.option("--images-per-class", type=click.IntRange(min=1), default=None)
@click.option("--image-size", type=int, default=None, help="Input side. [default: the backbone's]")
@click.option(
    "--amp",
    type=click.Choice(["fp16", "bf16", "off"]),
    default=None,
    help="Autocast dtype. [default: the recipe's; auto counts as bf16]",
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None)
@click.option("--all", "all_rows", is_flag=True, help="Every declared Table-1 row.")
@click.option(
    "--measure",
    "measure_device",
    default=None,
    metavar="DEVICE",
    help="Also run the step for real on DEVICE (cuda, cuda:N; cpu gives RSS) and print "
    "the measured peaks beside the estimate.",
)
def memory(
    method, opts, dataset, backbone, embedding_dim, batch, images_per_class, image_size, amp,
    optimizer, all_rows, measure_device,
) -> None:  # fmt: skip
    """Peak accelerator memory of a training step, estimated without an accelerator, with
    inference FLOPs and the stored size of what trains (no images, no weights)."""
    from dmlbench.cost.memory import StepShape
    from dmlbench.cost.table import (
        cost_row,
        describe,
        measure_on_device,
        recipe_amp,
        rows_for_table,
        to_frame,
    )  # fmt: skip
    from dmlbench.data.spec import get_dataset
    from dmlbench.options import parse_key_values
    from dmlbench.registry import get_method
    from dmlbench.run.execute import pick_device

    benchmark = get_dataset(dataset)
    recipe = benchmark.recipe
    shape = StepShape(
        backbone=backbone or recipe.backbone,
        batch=batch or recipe.batch_size,
        image_size=image_size,
        amp=amp or recipe_amp(recipe),
        optimizer=optimizer or recipe.optimizer,
        num_classes=benchmark.num_train_classes,
        embedding_dim=embedding_dim,
        images_per_class=images_per_class or recipe.images_per_class,
        proxy_init=recipe.proxy_init,
    )
    if all_rows:
        if opts or method != "linear-probe":
            raise click.UsageError("--all prints every Table-1 row; drop --method/--opt")
        skipped = []
        rows = rows_for_table(shape, recipe, skipped)
    else:
        given = parse_key_values(opts)
        get_method(method).from_values(given)  # the user's options, checked on their own
        options = {**recipe.defaults_for(method)["method_options"], **given}
        rows = [cost_row(method, get_method(method).from_values(options), shape)]
    for line in describe(shape):
        click.echo(line)
    click.echo(to_frame(rows).to_string(index=False))
    for line in skipped if all_rows else ():
        click.echo(line)
    if measure_device is not None:
        device = pick_device(measure_device)
        for row in rows:
            measured = measure_on_device(type(row.method)(row.method.options), shape, device)
            figures = ", ".join(f"{k} {v:.3f}" if "/" in k else f"{k} {v:.0f}"
                                for k, v in measured.items() if v is not None)  # fmt: skip
            click.echo(f"measured on {device}, {row.label}: {figures}")


@main.command("eval")
@click.option("--backbone", default=None, help="Score this backbone's pooled features, untrained.")
@click.option(
    "--weights",
    default=None,
    help="Its weights: a .safetensors/.pth file, 'pretrained' or 'none'. [default: pretrained]",
)
@click.option(
    "--embeddings",
    type=click.Path(path_type=Path),
    default=None,
    help="Score precomputed embeddings (.npy, .safetensors, .pt), one row per image in the "
    "order --dump-order writes.",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    default=None,
    help="With --embeddings and no dataset: one label per row (.npy, .txt, .csv).",
)
@click.option(
    "--dump-order",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the dataset's evaluation order (index,set,path,label) as CSV and stop.",
)
@click.option("--dataset", default="glyphs", show_default=True, help="Dataset name or folder:PATH.")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--data-root", default=None, help="Folder of the public benchmarks.")
@click.option("--label", default=None, help="Row name in reports.")
@click.option("--device", default="auto", show_default=True)
@click.option("--output", default="results/runs", show_default=True)
def evaluate_command(backbone, weights, embeddings, labels, dump_order, dataset, split, data_root,
                     label, device, output) -> None:  # fmt: skip
    """Score a backbone with no training, or embeddings computed elsewhere, with the same
    metrics as `dmlbench run` (stored as a run directory the report lists)."""
    from dmlbench.config import RunConfig
    from dmlbench.run import zero_shot

    chosen = [name for name, value in (("--backbone", backbone), ("--embeddings", embeddings),
                                       ("--dump-order", dump_order)) if value]  # fmt: skip
    if len(chosen) != 1:
        raise UserError("dmlbench eval: give one of --backbone, --embeddings or --dump-order")
    if labels is not None and embeddings is None:
        raise UserError("--labels goes with --embeddings")
    if dump_order is not None:
        rows = zero_shot.dump_order(dataset, split, dump_order, data_root)
        click.echo(f"{dump_order}: {rows} rows, the order embeddings of {dataset} ({split}) take")
        return
    config = RunConfig(dataset=dataset, data_root=data_root, split=split, device=device,
                       output=output, backbone=backbone, weights=weights)  # fmt: skip
    if embeddings is not None and labels is not None:
        run_dir, summary = zero_shot.evaluate_with_labels(embeddings, labels, config, label)
    elif embeddings is not None:
        run_dir, summary = zero_shot.evaluate_embeddings(embeddings, config, label)
    else:
        run_dir, summary = zero_shot.evaluate_backbone(config, label)
    m = summary["metrics"]
    recalls = "  ".join(f"R@{k.split('@')[1]} {v:.4f}" for k, v in m.items()
                        if k.startswith("recall@"))  # fmt: skip
    click.echo(
        f"{summary['method_label']} on {summary['dataset']} ({split}, {m['queries']} queries)"
    )
    click.echo(f"  {recalls}")
    extra = "".join(f"  {k.upper()} {m[k]:.4f}" for k in ("nmi", "f1") if k in m)
    click.echo(f"  MAP@R {m['map@r']:.4f}  R-precision {m['r_precision']:.4f}{extra}")
    click.echo(f"  stored in {run_dir}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--queries", type=int, default=8, show_default=True, help="Queries per grid.")
@click.option("--k", type=int, default=5, show_default=True, help="Neighbours per query.")
@click.option("--seed", type=int, default=0, show_default=True, help="Draw of the random grid.")
def show(run_dir, queries, k, seed) -> None:
    """Retrieval grids of a finished run: random, worst and best queries with their
    top-k neighbours, framed green (same class) or red. Written to RUN_DIR/pictures."""
    from dmlbench.run.pictures import show as draw

    for path in draw(run_dir, queries=queries, k=k, seed=seed, echo=click.echo):
        click.echo(str(path))


@main.command("convert-state")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--trust", is_flag=True, help="You trust where these files came from.")
def convert_state(files: tuple[Path, ...], trust: bool) -> None:
    """Convert old-format checkpoints or pretraining state (pickles) to the data-only
    format. Pickles are read data only (torch's restricted unpickler, which refuses
    anything that would call code); still, convert only files you trust."""
    from dmlbench.train.convert import convert_trusted

    if not trust:
        raise UserError(
            "convert-state reads pickles (data only, yet a pickle is a program); pass --trust "
            "only for files you or someone you trust made"
        )
    for path in files:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    for path in files:
        click.echo(f"{path} → {convert_trusted(path)}")


@main.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--queries", type=int, default=8, show_default=True, help="Queries per grid.")
@click.option("--k", type=int, default=3, show_default=True, help="Neighbours per run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Draw of the shown queries.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder of the grids. [default: RUN_A/pictures/vs-RUN_B]")  # fmt: skip
def compare(run_a, run_b, queries, k, seed, out) -> None:
    """Queries one run gets right at rank 1 and the other wrong: the counts both ways,
    and a grid of each."""
    from dmlbench.run.pictures import compare as contrast

    result = contrast(run_a, run_b, queries=queries, k=k, seed=seed, out=out, echo=click.echo)
    total = result.a_only + result.b_only + result.both + result.neither
    click.echo(f"A = {run_a}\nB = {run_b}\nrank-1 outcome of {total} queries:")
    for text, count in (("A right, B wrong", result.a_only), ("B right, A wrong", result.b_only),
                        ("both right", result.both), ("both wrong", result.neither)):  # fmt: skip
        click.echo(f"  {text:<17}{count:>7}  ({100 * count / max(total, 1):.1f}%)")
    for path in result.paths:
        click.echo(str(path))


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Also list each method's options.")
def methods(verbose: bool) -> None:
    """List the registered methods (built-in and plugins)."""
    from dmlbench.options import describe_options
    from dmlbench.registry import get_method, method_names

    names = method_names()
    width = max(map(len, names))
    for name in names:
        cls = get_method(name)
        click.echo(f"{name:<{width}}  {cls.description}")
        if verbose:
            for opt, type_name, default, help_text in describe_options(cls.Options):
                click.echo(
                    f"{'':<{width}}    {opt} ({type_name}, default {default!r}): {help_text}"
                )


@main.command()
def datasets() -> None:
    """List the datasets, their training-class counts and where their data lives."""
    from dmlbench.data.spec import CATALOG, dataset_names, get_dataset

    for name in dataset_names():
        if name.endswith(":PATH"):
            prefix = name.split(":")[0]
            click.echo(f"{name:<14} {CATALOG.prefixed[prefix].description}")
            continue
        benchmark = get_dataset(name)
        state = "present" if benchmark.is_present() else "absent"
        sizes = ", ".join(
            f"{split} {classes:,} classes / {images:,} images"
            for split, (classes, images) in benchmark.split_sizes().items()
        )
        click.echo(
            f"{name:<14} {benchmark.description}\n"
            f"{'':<14} {sizes}; R@K {list(benchmark.recall_ks)}\n"
            f"{'':<14} {state} at {benchmark.location()}"
        )


def row_filter_options(command):
    """--only/--skip: part of a grid's rows, by label (repeatable)."""
    command = click.option(
        "--skip", multiple=True, metavar="LABEL",
        help="Leave out the row with this label (repeatable).",
    )(command)  # fmt: skip
    return click.option(
        "--only", multiple=True, metavar="LABEL",
        help="Run only the row with this label (repeatable). [default: every row]",
    )(command)  # fmt: skip


def executor_options(command):
    """--executor and the Slurm job's shape, shared by sweep and tune."""
    options = [
        click.option(
            "--executor",
            type=click.Choice(["local", "slurm", "submitit-local"]),
            default="local",
            show_default=True,
            help="local: --jobs processes here; slurm: an array job through submitit; "
            "submitit-local: submitit's local executor (the Slurm code path, on this machine).",
        ),
        click.option("--slurm-partition", default=None, help="Slurm partition of the array job."),
        click.option("--gpus-per-run", type=click.IntRange(min=0), default=1, show_default=True),
        click.option("--cpus-per-run", type=click.IntRange(min=1), default=8, show_default=True),
        click.option("--mem-gb", type=click.IntRange(min=1), default=32, show_default=True),
        click.option(
            "--timeout-min", type=click.IntRange(min=1), default=24 * 60, show_default=True
        ),  # fmt: skip
        click.option(
            "--array-parallelism", type=click.IntRange(min=1), default=32, show_default=True
        ),  # fmt: skip
        click.option(
            "--submitit-folder",
            type=click.Path(path_type=Path),
            default=None,
            help="submitit's job files and logs. [default: <output>/.submitit]",
        ),
        click.option(
            "--wait", is_flag=True, help="With submitit: wait for the jobs and report them."
        ),  # fmt: skip
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("grid_file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="List the grid and what is finished; run nothing.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--output", default=None, help="Override the file's output folder.")
@executor_options
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop a run that made no progress (no training step, no evaluation batch) for "
    "SECONDS and report it as stalled; it stays resumable. [default: off]",
)
@click.option(
    "--untuned",
    is_flag=True,
    help="Run a grid that has a tune: block with its own settings instead of refusing "
    "(its settings were then not chosen on validation).",
)
@row_filter_options
def sweep(
    grid_file: Path,
    dry_run: bool,
    jobs: int,
    output: str | None,
    stall_timeout: float | None,
    untuned: bool,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    **submit,
) -> None:
    """Run a grid of methods × datasets × backbones × seeds; finished runs are skipped,
    interrupted ones resumed."""
    from dmlbench.run.sweep import (
        describe,
        has_tune_block,
        read_sweep,
        run_sweep,
        select_rows,
        with_output,
    )

    if has_tune_block(grid_file) and not (dry_run or untuned):
        # Its rows' settings are placeholders for the search; run here, they would
        # land on the test split beside the tuned runs under the same labels.
        raise UserError(
            f"{grid_file} has a tune: block: run `dmlbench tune {grid_file}` and sweep the "
            "chosen.yaml it writes (or pass --untuned to run the grid's own settings)"
        )
    planned = select_rows(read_sweep(grid_file), only, skip, grid_file)
    if output:
        planned = with_output(planned, output)
    if dry_run:
        for line in describe(planned):
            click.echo(line)
        return
    if submit["executor"] != "local":
        _submit_sweep(planned, grid_file, **submit)
        return
    counts = run_sweep(planned, jobs=jobs, echo=click.echo, stall_timeout=stall_timeout)
    click.echo(
        f"sweep {grid_file}: {counts['finished']} finished now, {counts['skipped']} already, "
        f"{counts['failed']} failed"
        + (f", {counts['stalled']} stalled" if counts["stalled"] else "")
        + (f", {counts['elsewhere']} left to other processes" if counts["elsewhere"] else "")
    )
    if counts["failed"] or counts["stalled"]:
        sys.exit(1)


def _submit_sweep(planned, grid_file: Path, executor: str, wait: bool, **options) -> None:
    from dmlbench.run.slurm import submit

    folder = options.pop("submitit_folder") or Path(planned[0].config.output) / ".submitit"
    slurm = _slurm_options(executor, options)
    submitted = submit(planned, executor, folder, slurm, echo=click.echo)
    if not submitted:
        return
    if not wait:
        click.echo(f"`dmlbench sweep {grid_file} --dry-run` shows what has finished")
        return
    if _report_jobs(submitted, lambda result: f"finished, {result['run_dir']}"):
        sys.exit(1)


def _slurm_options(executor: str, options: dict):
    from dmlbench.run.slurm import SlurmOptions

    if executor == "slurm" and not options["slurm_partition"]:
        raise UserError("--executor slurm needs --slurm-partition NAME")
    return SlurmOptions(
        partition=options["slurm_partition"],
        gpus_per_run=options["gpus_per_run"],
        cpus_per_run=options["cpus_per_run"],
        mem_gb=options["mem_gb"],
        timeout_min=options["timeout_min"],
        array_parallelism=options["array_parallelism"],
    )


def _report_jobs(jobs: list, finished: Callable) -> int:
    """One line per submitit job (waiting for each); the number that failed."""
    failed = 0
    for job in jobs:
        try:
            click.echo(f"job {job.job_id}: {finished(job.result())}")
        except Exception as e:  # noqa: BLE001 - report every job, then exit 1
            failed += 1
            last = (str(e).strip().splitlines() or ["(no message)"])[-1]
            click.echo(f"job {job.job_id}: FAILED ({last}); log in {job.paths.stderr}")
    return failed


@main.command()
@click.argument("grid_file", required=False, type=click.Path(path_type=Path))
@click.option("--method", default=None, help="The method to tune (or give a sweep file).")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="A fixed method option.")
@click.option("--dataset", default="glyphs", show_default=True)
@click.option("--backbone", default=None, help="[default: the dataset's]")
@click.option("--label", default=None, help="Row name of the chosen settings.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML of the run-config keys every trial keeps (batch size, epochs …).",
)
@click.option("--trials", type=click.IntRange(min=1), default=None, help="[default: 20]")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs per trial. [default: the dataset's recipe]")  # fmt: skip
@click.option(
    "--metric",
    type=click.Choice(["map@r", "recall@1"]),
    default=None,
    help="Validation metric of the final epoch to maximise. [default: map@r]",
)
@click.option("--seed", type=int, default=None, help="The sampler's seed. [default: 0]")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The study, trial runs, plots and chosen.yaml. [default: results/tune]",
)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rows tuned at a time, each in its own process with its share of the "
              "cores (a row's trials stay sequential: the same budget for every row).")  # fmt: skip
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="The Optuna storage of the studies: journal:PATH (a journal file, safe on a shared "
    "filesystem) or an RDB URL (postgresql://…, mysql://…, sqlite:///…). Processes given "
    "the same grid and storage share its rows. [default: <output>/studies.db; with "
    "--executor: journal:<output>/studies.journal]",
)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --executor: tasks of the array job. [default: one a row]")  # fmt: skip
@executor_options
@row_filter_options
def tune(grid_file, method, opts, dataset, backbone, label, config_file, trials, epochs, metric,
         seed, output, jobs, storage, workers, only, skip, **submit) -> None:  # fmt: skip
    """Choose each method's settings on validation classes (Optuna TPE, the same trials and
    epochs for every method); writes chosen.yaml, a sweep that reads test once per seed."""
    from dmlbench.run.tune import TuneSettings, chosen_sweep, tune_rows, write_if_changed

    flags = {"trials": trials, "epochs": epochs, "metric": metric, "seed": seed}
    flags = {k: v for k, v in flags.items() if v is not None}
    if grid_file is not None:
        if method or opts:
            raise UserError("dmlbench tune: give a sweep file or --method, not both")
        bases, block, test_output, seeds = _tune_grid(grid_file, only, skip)
        out = Path(output or block.pop("output", "results/tune"))
        block.pop("output", None)
        storage = storage or block.pop("storage", None)
        block.pop("storage", None)
        settings = TuneSettings(**{**block, **flags})
    else:
        if method is None:
            raise UserError("dmlbench tune: give --method NAME (or a sweep file)")
        if only or skip:
            raise UserError("dmlbench tune: --only/--skip pick rows of a sweep file; give one")
        from dmlbench.config import make_config
        from dmlbench.options import parse_key_values

        settings = TuneSettings(**flags)
        values = {"method": method, "dataset": dataset, "backbone": backbone, "label": label,
                  "method_options": parse_key_values(opts)}  # fmt: skip
        bases = [make_config(config_file, {k: v for k, v in values.items() if v not in (None, {})}
                             | {"method_options": values["method_options"]})]  # fmt: skip
        out = Path(output or "results/tune")
        test_output, seeds = "results/runs/tuned", [0, 1, 2]
    if submit["executor"] != "local":
        _submit_tune(bases, settings, out, storage, test_output, seeds, workers, **submit)
        return
    results = tune_rows(bases, settings, out, jobs, echo=click.echo, storage=storage)
    path = out / "chosen.yaml"
    changed = write_if_changed(path, chosen_sweep(results, test_output, seeds))
    click.echo(f"{path}: {'written' if changed else 'unchanged'}; run it on the test split with "
               f"`dmlbench sweep {path}`")  # fmt: skip


def _submit_tune(bases, settings, out: Path, storage, test_output, seeds, workers,
                 executor: str, wait: bool, **options) -> None:  # fmt: skip
    """Tuning workers as an array job; the studies in a storage every node reaches."""
    from dmlbench.run import tune as tuning
    from dmlbench.run.slurm import submit_tune

    for base in bases:  # bad input stops here, before anything is submitted
        tuning.check_space(base.method, tuning.searched_space(base.method, settings))
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        storage = f"{tuning.JOURNAL}{out / 'studies.journal'}"
    if storage.startswith(tuning.JOURNAL):  # the tasks may start in another folder
        storage = (
            f"{tuning.JOURNAL}{Path(storage.removeprefix(tuning.JOURNAL)).expanduser().resolve()}"
        )
    out = out.resolve()
    if not tuning.is_shared(storage):
        raise UserError(f"--storage {storage}: tuning workers on several nodes need a shared "
                        "storage: journal:PATH or a database URL")  # fmt: skip
    if tuning.url_password(storage):  # submitit writes each task's arguments to disk
        shown = tuning.storage_text(out, storage)
        raise UserError(f"--storage {shown}: with --executor the URL is stored with the jobs; "
                        "keep the password in the database client's own file (e.g. ~/.pgpass) "
                        "and leave it out of the URL")  # fmt: skip
    tuning.open_storage(
        out, settings, storage
    )  # a bad URL stops here, before anything is submitted
    folder = options.pop("submitit_folder") or out / ".submitit"
    jobs = submit_tune(bases, settings, out, storage, test_output, seeds,
                       workers or len(bases), executor, folder, _slurm_options(executor, options),
                       echo=click.echo)  # fmt: skip
    if not wait:
        click.echo(f"each worker writes {out / 'chosen.yaml'} as it ends; "
                   f"`dmlbench tune ... --storage {storage}` continues here")  # fmt: skip
        return
    if _report_jobs(jobs, lambda result: f"finished, {result}"):
        sys.exit(1)


def _tune_grid(
    grid_file: Path, only: tuple[str, ...], skip: tuple[str, ...]
) -> tuple[list, dict, str, list[int]]:
    """The method rows of a sweep file (one per label × dataset × backbone; its seeds are
    for the test runs), less those ``only``/``skip`` leave out, and its ``tune:`` block."""
    import dataclasses

    from dmlbench.config import read_yaml
    from dmlbench.run.sweep import read_sweep, select_rows

    grid = read_yaml(grid_file)
    block = dict(grid.get("tune") or {})
    valid = {"trials", "epochs", "metric", "seed", "output", "storage", "heartbeat_seconds",
             "startup_trials", "knobs", "fix"}  # fmt: skip
    unknown = sorted(set(block) - valid)
    if unknown:
        raise UserError(f"{grid_file}: unknown key tune.{unknown[0]}; valid keys: "
                        f"{', '.join(sorted(valid))}")  # fmt: skip
    seen, bases = set(), []
    for run in select_rows(read_sweep(grid_file), only, skip, grid_file):
        c = dataclasses.replace(run.config, seed=0)
        key = (c.label, c.method, str(c.method_options), c.dataset, c.backbone)
        if key not in seen:
            seen.add(key)
            bases.append(c)
    return bases, block, grid.get("output", "results/runs"), list(grid.get("seeds") or [0])


@main.command()
@click.argument("runs", default="results/runs", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "latex", "csv"]),
    default="markdown",
    show_default=True,
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write report.<ext>, report.csv and plots/ here.",
)
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="e.g. dataset=cub")
@click.option("--with-paper", is_flag=True, help="Put the paper's published numbers beside ours.")
@click.option("--vs", "vs_key", default=None, metavar="KEY",
              help="Each row's metric against a config key (epochs, images_per_class, "
                   "opt.alpha …): a table, and a plot in --output.")  # fmt: skip
@click.option("--curves", is_flag=True, help="Per-epoch curves of every row on one axis "
              "(in --output).")  # fmt: skip
@click.option(
    "--metric",
    type=click.Choice(["map@r", "recall@1", "r_precision"]),
    default="map@r",
    show_default=True,
    help="What --vs and --curves show.",
)
def report(runs: Path, fmt: str, output: Path | None, filters, with_paper: bool, vs_key,
           curves: bool, metric: str) -> None:  # fmt: skip
    """Tables (Table-1 and Table-2 layouts) and plots from the runs under RUNS; with
    --vs or --curves, the ablation views of any grid instead."""
    from dmlbench.options import parse_key_values

    if vs_key is not None or curves:
        from dmlbench.store.ablation import render_ablation

        if curves and output is None:
            raise UserError("--curves draws a plot: give --output DIR")
        click.echo(render_ablation(runs, vs_key, curves, metric, output,
                                   parse_key_values(filters)), nl=False)  # fmt: skip
        return
    from dmlbench.store.report import render

    click.echo(render(runs, fmt, output, parse_key_values(filters), with_paper))


@main.group()
def data() -> None:
    """Get, prepare and check the public benchmarks (cub, cars, sop, inshop)."""


def _public(name: str, data_root: str | None):
    from dmlbench.data.public.base import PublicDataset
    from dmlbench.data.spec import get_dataset

    benchmark = get_dataset(name, data_root)
    if not isinstance(benchmark, PublicDataset):
        raise UserError(f"dataset {name}: not a public benchmark; use cub, cars, sop or inshop")
    return benchmark


DATA_ROOT = click.option(
    "--data-root", default=None, help="Folder of the benchmarks. [default: $DMLBENCH_DATA]"
)


@data.command()
@click.argument("name")
@DATA_ROOT
def download(name: str, data_root: str | None) -> None:
    """Download NAME from its official source (resumable, checksum-verified) and unpack it."""
    benchmark = _public(name, data_root)
    if not benchmark.sources:
        click.echo(f"{name}: no stable download source. {benchmark.manual_text()}")
        sys.exit(2)
    benchmark.download()
    click.echo(f"{name}: ready at {benchmark.root}")


@data.command()
@click.argument("name")
@click.option(
    "--from",
    "files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A file fetched by hand (archive or index file); repeatable.",
)
@DATA_ROOT
def prepare(name: str, files: tuple[Path, ...], data_root: str | None) -> None:
    """Put files fetched by hand into place (archives are unpacked safely)."""
    benchmark = _public(name, data_root)
    benchmark.prepare(list(files))
    click.echo(f"{name}: ready at {benchmark.root}")


@data.command()
@click.argument("name")
@DATA_ROOT
def verify(name: str, data_root: str | None) -> None:
    """Check NAME's layout, published counts, and that every image decodes."""
    from dmlbench.data.verify import find_bad_images

    benchmark = _public(name, data_root)
    records = benchmark.records()  # layout and counts
    bad = find_bad_images(records)
    for path, why in bad:
        click.echo(f"{path}: {why}")
    if bad:
        raise UserError(f"dataset {name}: {len(bad)} of {len(records)} images do not decode")
    click.echo(f"{name}: {len(records):,} images, counts as published, all decode")
