"""``dmlbench tune``: each method's settings chosen on validation classes, with one budget.

Every method gets the same number of trials and epochs, searched by Optuna's
TPE sampler over the space the method declares (``Method.search_space``: a
learning rate and images per class by default, plus the method's own knobs).
A trial is a real run with ``split=val`` (trained on the training classes
minus the validation ones, scored on those; the test images are never read)
whose score is its final epoch's validation MAP@R. MAP@R rather than R@1:
it reads the whole ranking, so it separates settings that R@1 (one
neighbour) calls equal, and it is what the report puts beside R@1.

A median pruner stops a trial whose validation MAP@R after an epoch is below
the median of earlier trials at that epoch (after three complete trials and
the first epoch), so a bad learning rate costs one or two epochs, not all.

The studies live in an SQLite file under the output folder, with Optuna's
heartbeat, or in any Optuna storage given as ``--storage``: an RDB URL, or
``journal:PATH``, Optuna's journal file, which is safe on a shared (network)
filesystem where SQLite is not. A killed tune starts again where it stopped.
One process at a time tunes a row (a lock on one machine, a lease on a shared
storage, see ``dmlbench.run.lease``); other processes given the same grid and
storage tune the rows nobody holds and then wait for the rest, so any number
of processes or array tasks drain the rows' budgets, each slot once, and
choose what one process would. A row's budget is a
list of slots, each the seed's draw (``startup_draws``); a slot counts once
a trial of it finished (complete or pruned), so a trial whose process died
is run again with its settings, and nothing is run twice. The chosen
settings are written as a sweep file (``chosen.yaml``) whose runs read test once per seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dmlbench.config import RunConfig, config_key, to_yaml
from dmlbench.errors import UserError
from dmlbench.method import Choice, IntRange, LogUniform, Uniform
from dmlbench.registry import get_method
from dmlbench.run.execute import execute, prepare
from dmlbench.run.lease import describe_owner, try_lease
from dmlbench.run.lock import holder, try_lock
from dmlbench.train.checkpoint import fault_point

RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"method", "method_options", "split"}
METRICS = ("map@r", "recall@1")


N_STARTUP = 10  # TPE's random start (Optuna's default), drawn by startup_draws


@dataclass(frozen=True)
class TuneSettings:
    trials: int = 20
    epochs: int | None = None  # None: the dataset's recipe
    metric: str = "map@r"
    seed: int = 0
    heartbeat_seconds: int = 60  # a dead trial is marked failed after twice this without a beat
    startup_trials: int = N_STARTUP
    knobs: bool = False  # also search each method's own knobs (Method.knob_space)
    fix: tuple[str, ...] = ()  # searched keys held at the grid's value instead (an ablation)

    def __post_init__(self):
        if self.startup_trials < 1:
            raise UserError(f"tune: startup_trials {self.startup_trials}: give at least 1")
        if self.trials < 1:
            raise UserError(f"tune: trials {self.trials}: give at least 1")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"tune: epochs {self.epochs}: give at least 1")
        if isinstance(self.fix, str) or not all(isinstance(k, str) for k in self.fix):
            raise UserError(f"tune: fix {self.fix!r}: give a list of keys such as "
                            "[images_per_class]")  # fmt: skip
        object.__setattr__(self, "fix", tuple(self.fix))
        if self.metric not in METRICS:
            raise UserError(f"tune: metric {self.metric!r}: use {' or '.join(METRICS)}")


class Pruned(Exception):
    """Optuna's pruner stopped this trial; its run directory says "pruned"."""

    run_status = "pruned"


def check_space(method: str, space: dict) -> None:
    """Every searched key is a run-config key or ``opt.<an option of the method>``, and
    every range holds values; else one line naming the key."""
    options = set(get_method(method).Options.__dataclass_fields__)
    for key, distribution in space.items():
        name = key.removeprefix("opt.")
        known = name in options if key.startswith("opt.") else key in RUN_KEYS
        if not known:
            raise UserError(
                f"method {method}: search space key {key!r} is neither a run-config key nor "
                f"opt.<option>; options: {', '.join(sorted(options))}"
            )
        d = distribution
        empty = (
            isinstance(d, LogUniform | Uniform) and not d.low < d.high
            or isinstance(d, LogUniform) and d.low <= 0
            or isinstance(d, IntRange) and d.low > d.high
            or isinstance(d, Choice) and not d.values
        )  # fmt: skip
        if empty:
            raise UserError(f"method {method}: search space {key!r} = {distribution} is empty")


def searched_space(method: str, settings: TuneSettings) -> dict:
    """What a tune searches for ``method``: the space every method shares, and with
    ``knobs`` the method's own knobs on top."""
    cls = get_method(method)
    space = {**cls.search_space(), **(cls.knob_space() if settings.knobs else {})}
    unknown = [key for key in settings.fix if key not in space]
    if unknown:
        raise UserError(f"tune: fix {unknown[0]!r} is not searched for {method}; searched: "
                        f"{', '.join(space)}")  # fmt: skip
    return {k: d for k, d in space.items() if k not in settings.fix}


def suggest(trial, key: str, distribution):
    if isinstance(distribution, LogUniform):
        return trial.suggest_float(key, distribution.low, distribution.high, log=True)
    if isinstance(distribution, Uniform):
        return trial.suggest_float(key, distribution.low, distribution.high)
    if isinstance(distribution, IntRange):
        return trial.suggest_int(key, distribution.low, distribution.high, step=distribution.step)
    return trial.suggest_categorical(key, list(distribution.values))


def apply_params(base: RunConfig, params: dict) -> RunConfig:
    """The run config a trial's (or the chosen) parameters make of ``base``."""
    options = dict(base.method_options)
    values = {}
    for key, value in params.items():
        if key.startswith("opt."):
            options[key.removeprefix("opt.")] = value
        else:
            values[key] = value
    return dataclasses.replace(base, method_options=options, **values)


def study_name(base: RunConfig) -> str:
    """Which study a (method row, dataset, backbone) tunes into: a change to anything
    fixed makes another study."""
    fixed = dataclasses.replace(base, seed=0, output="")
    return f"{base.label or base.method}@{base.dataset}#{config_key(fixed)}".replace(" ", "_")


@dataclass
class TuneResult:
    study: str
    best_params: dict
    best_value: float
    trials: int
    chosen: RunConfig


JOURNAL = "journal:"


def storage_text(output: Path, url: str | None) -> str:
    """Where the studies are, for messages: a database URL's password never shows."""
    if url is None:
        return str(output / "studies.db")
    if url.startswith(JOURNAL):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: say nothing of it
        return "the storage given"


def url_password(url: str | None) -> bool:
    """Whether a database URL carries a password (which must not be written anywhere)."""
    if url is None or url.startswith(JOURNAL):
        return False
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password is not None
    except Exception:  # noqa: BLE001 - unparsable: open_storage says so
        return False


def is_shared(url: str | None) -> bool:
    """Whether processes on several machines may use this storage: then a row is claimed
    by a lease (a file lock is not to be trusted there)."""
    return url is not None and not url.startswith("sqlite:")


def open_storage(output: Path, settings: TuneSettings, url: str | None = None):
    """The studies' storage: ``url`` (``journal:PATH`` or an RDB URL), or by default an
    SQLite database under ``output`` (created, with its tables, on first use)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url is not None and url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = Path(url.removeprefix(JOURNAL)).expanduser()
        if not path.parent.is_dir():
            raise UserError(f"--storage {url}: folder {path.parent} does not exist; make it "
                            "(on a filesystem every tuning process sees)")  # fmt: skip
        # O_EXCL lock files: what Optuna documents for NFSv3+, where fcntl locks break
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        output.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(backend)
    if url is None:
        output.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since v2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = optuna.storages.RDBStorage(
                url or f"sqlite:///{output / 'studies.db'}",
                heartbeat_interval=settings.heartbeat_seconds,
                grace_period=2 * settings.heartbeat_seconds,
            )  # a trial whose process died becomes FAIL; its slot's draw then runs again
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's URL, driver and connection errors
            if url is None:
                raise
            shown = storage_text(output, url)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0].replace(url, shown)
            raise UserError(f"--storage {shown}: {reason} (give journal:PATH or a database URL "
                            "such as postgresql://user@host/db)") from None  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    return storage


class RowBusy(Exception):
    """Another live process tunes this row now (its trials land in the same study)."""


def tune_rows(
    bases: list[RunConfig], settings: TuneSettings, output: Path, jobs: int = 1,
    echo: Callable = print, storage: str | None = None,
) -> list[TuneResult]:  # fmt: skip
    """Tune each row, ``jobs`` rows at a time in processes of their own (each with its
    share of the cores). Trials within a row stay sequential, so every row gets
    exactly ``settings.trials`` trials however many processes run."""
    if jobs <= 1 or len(bases) <= 1:
        return drain_rows(bases, settings, output, echo, storage)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from dmlbench.run.sweep import available_cores

    for base in bases:  # bad input stops here, before any process starts
        check_space(base.method, searched_space(base.method, settings))
    open_storage(output, settings, storage)  # the tables, made once, not raced by the workers
    threads = max(1, available_cores() // jobs)
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(min(jobs, len(bases)), mp_context=context,
                             initializer=_set_threads, initargs=(threads,)) as pool:  # fmt: skip
        futures = [pool.submit(drain_rows, [base], settings, output, None, storage)
                   for base in bases]  # fmt: skip
        try:
            return [future.result()[0] for future in futures]
        except BrokenProcessPool:  # killed (out of memory, a signal): the studies resume
            raise UserError(
                f"dmlbench tune: a tuning process died; run the same command again to continue "
                f"(finished trials are kept in {storage_text(output, storage)})"
            ) from None


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def drain_rows(
    bases: list[RunConfig], settings: TuneSettings, output: Path, echo: Callable | None,
    storage: str | None = None,
) -> list[TuneResult]:  # fmt: skip
    """Tune the rows in order, leaving any row another process holds for later, then
    waiting for those: several processes on one grid and storage share its rows, and
    each returns every row's result (a row tuned elsewhere is read from the study)."""
    results: dict[int, TuneResult] = {}
    told: set[int] = set()
    while len(results) < len(bases):
        progressed = False
        for index, base in enumerate(bases):
            if index in results:
                continue
            try:
                results[index] = tune_row(base, settings, output, echo, storage)
                progressed = True
            except RowBusy as busy:
                if index not in told:
                    told.add(index)
                    say = echo or _row_echo(base)
                    say(f"{base.label or base.method}: {busy}; tuning the other rows first, "
                        "then waiting for it")  # fmt: skip
        if not progressed and len(results) < len(bases):
            time.sleep(min(5.0, settings.heartbeat_seconds))
    return [results[index] for index in range(len(bases))]


def _row_echo(base: RunConfig) -> Callable:
    row = base.label or base.method

    def echo(line: str) -> None:
        print(f"[{row}] {line.strip()}", flush=True)

    return echo


def tune_row(base: RunConfig, settings: TuneSettings, output: Path, echo: Callable | None,
             storage: str | None = None) -> TuneResult:  # fmt: skip
    """One row with its header and summary lines (prefixed by the row in a worker)."""
    echo = echo or _row_echo(base)
    result = tune(base, settings, output, echo=echo, storage=storage)
    echo(summary_line(result, settings.metric))
    return result


def tune(base: RunConfig, settings: TuneSettings, output: Path, echo: Callable = print,
         storage: str | None = None) -> TuneResult:  # fmt: skip
    """Tune one method row; returns the chosen settings (and the study's numbers). Raises
    RowBusy while another live process tunes it."""

    space = searched_space(base.method, settings)
    check_space(base.method, space)
    trial_base = dataclasses.replace(base, split="val", eval_every=1,
                                     output=str(output / "trials"))  # fmt: skip
    if settings.epochs is not None:
        trial_base = dataclasses.replace(trial_base, epochs=settings.epochs)
    trial_base = prepare(trial_base, require_data=True)[0]  # bad input stops here: nothing written
    _check_validation_split(trial_base)
    studies = open_storage(output, settings, storage)
    name = (
        study_name(trial_base)
        + ("+knobs" if settings.knobs else "")
        + "".join(f"+fixed:{key}" for key in settings.fix)
    )
    owner = claim_row(output, name, storage, settings)
    with owner:
        row = base.label or base.method
        echo(f"tuning {row} on {base.dataset} ({settings.trials} trials, "
             f"validation {settings.metric})")  # fmt: skip
        return _tune_owned(base, settings, output, echo, space, trial_base, studies, name)


def claim_row(output: Path, name: str, storage: str | None, settings: TuneSettings):
    """The right to tune the study ``name``: a kernel lock on one machine, a lease file
    (kept alive, taken over when its owner is gone) for a shared storage. With it held,
    a trial left RUNNING in the study belongs to a dead process."""
    path = study_lock_path(output, name)
    if is_shared(storage):
        lease_path = path.parent.parent / ".claims" / path.with_suffix(".lease").name
        owner = try_lease(lease_path, ttl=2 * settings.heartbeat_seconds)
        if owner is None:
            raise RowBusy(f"{describe_owner(lease_path)} is tuning it")
        return owner
    owner = try_lock(path)
    if owner is None:
        raise RowBusy(f"{holder(path)} is tuning it")
    return owner


def study_lock_path(output: Path, name: str) -> Path:
    """The lock a process holds while it tunes the study ``name``: with it held, a trial
    left RUNNING in the study belongs to a dead process."""
    return output / ".locks" / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.lock"


def _tune_owned(base, settings, output, echo, space, trial_base, storage, name) -> TuneResult:
    import optuna

    n_startup = settings.startup_trials
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=n_startup),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        load_if_exists=True,
    )
    close_abandoned_trials(study, output / "trials", base.label or base.method, echo)

    draws = startup_draws(space, settings.seed, min(settings.trials, n_startup))
    slot = 0

    def objective(trial) -> float:
        if "slot" not in trial.user_attrs:
            trial.set_user_attr("slot", slot)
        params = {key: suggest(trial, key, d) for key, d in space.items()}
        config = apply_params(trial_base, params)
        config = dataclasses.replace(
            config, label=f"{base.label or base.method} trial {trial.number}"
        )

        def report(record: dict) -> None:
            fault_point("trial-epoch")
            if settings.metric in record:
                trial.report(record[settings.metric], record["epoch"])
                if trial.should_prune():
                    raise Pruned(f"pruned after epoch {record['epoch']} ({settings.metric} "
                                 f"{record[settings.metric]:.4f})")  # fmt: skip

        try:
            result = execute(config, echo=lambda *a, **k: None, on_epoch=report)
        except Pruned as stop:
            echo(f"  trial {trial.number}: {_params_text(params)} → {stop}")
            raise optuna.TrialPruned() from None
        except UserError as e:  # settings this data cannot take (e.g. more classes per batch
            # than it has): the trial counts, as a pruned one, with the reason kept
            trial.set_user_attr("invalid", str(e))
            echo(f"  trial {trial.number}: {_params_text(params)} → invalid ({e})")
            raise optuna.TrialPruned() from None
        value = result.summary["metrics"][settings.metric]
        echo(f"  trial {trial.number}: {_params_text(params)} → {settings.metric} {value:.4f}")
        return value

    from optuna.trial import TrialState

    while (slot := _next_slot(study, draws, settings.trials)) is not None:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if slot < len(draws):  # the random start: the seed's draw for this slot
                study.enqueue_trial(draws[slot], user_attrs={"slot": slot})
            else:  # TPE proper: what it draws depends on the trials before, and the slot
                study.sampler = optuna.samplers.TPESampler(
                    seed=settings.seed + slot, n_startup_trials=n_startup
                )
        study.optimize(objective, n_trials=1)  # a waiting (enqueued) trial goes first
    counted = _budget_trials(study, draws)
    done = len(counted)
    completed = [t for t in counted if t.state == TrialState.COMPLETE]
    if not completed:
        reasons = {t.user_attrs.get("invalid") for t in study.trials} - {None}
        raise UserError(
            f"tune {name}: no trial completed"
            + (f"; every one was invalid: {sorted(reasons)[0]}" if reasons else "")
        )
    best = max(completed, key=lambda t: t.value)
    selected = (
        f"validation, {settings.trials} trials of {settings.epochs or trial_base.epochs} epochs"
    )
    chosen = dataclasses.replace(  # what the report shows: how, and what was chosen
        apply_params(base, best.params),
        selected_by=f"{selected}: {_params_text(best.params)} ({name})",
    )
    _save_plots(study, output / "plots" / re.sub(r"[^A-Za-z0-9._@-]+", "_", name.split("#")[0]))
    return TuneResult(name, dict(best.params), float(best.value), done, chosen)


def close_abandoned_trials(study, trials_dir: Path, row: str, echo: Callable) -> None:
    """Trials a dead process left RUNNING become FAIL before anything is drawn (the
    caller holds the study's lock, so no live process runs them): TPE then sees the
    study an uninterrupted tune would, and their slots run again. Their run directories
    are marked "abandoned" (never resumed: the slot's new trial runs afresh)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        marked = mark_abandoned(trials_dir, f"{row} trial {trial.number}")
        echo(
            f"  trial {trial.number}: its process died; closed as failed"
            + (f" ({', '.join(p.name for p in marked)} marked abandoned)" if marked else "")
        )


def mark_abandoned(trials_dir: Path, label: str) -> list[Path]:
    """The unfinished run directories of the trial labelled ``label``, now "abandoned"."""
    from dmlbench.atomic import write_json_atomic

    marked = []
    for config_path in sorted(trials_dir.glob("*/config.yaml")):
        run_dir = config_path.parent
        try:
            if (yaml.safe_load(config_path.read_text()) or {}).get("label") != label:
                continue
        except (OSError, AttributeError, yaml.YAMLError):
            continue
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {}  # killed before its first summary
        if summary.get("status") in (None, "running"):
            write_json_atomic(run_dir / "summary.json", {**summary, "status": "abandoned"})
            marked.append(run_dir)
    return marked


def startup_draws(space: dict, seed: int, count: int) -> list[dict]:
    """The first ``count`` settings TPE with ``seed`` draws over ``space``: random draws
    that depend on the seed alone. Each slot of a row's budget runs exactly its draw, so
    every row tries the same settings, and a tune restarted mid-row asks for what an
    uninterrupted one would. (Optuna's sampler keeps its random state in the process: a
    restarted one starts the sequence over and would draw the first settings again.)"""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as for the studies themselves
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(count, 1))
    study = optuna.create_study(sampler=sampler)  # in memory: nothing runs
    draws = []
    for _ in range(count):
        trial = study.ask()
        draws.append({key: suggest(trial, key, d) for key, d in space.items()})
        study.tell(trial, 0.0)
    return draws


def _slot_of(trial, draws: list[dict]) -> int | None:
    """The budget slot a finished trial filled (studies from before slots were recorded:
    the first draw its settings equal)."""
    if "slot" in trial.user_attrs:
        return int(trial.user_attrs["slot"])
    return next((k for k, draw in enumerate(draws) if draw == trial.params), None)


def _trials_by_slot(study, draws: list[dict]) -> dict:
    """Slot → the first finished (complete or pruned) trial of it: what the row's budget
    bought. A repeat of a slot (a restart before slots were kept) neither counts nor is
    chosen."""
    from optuna.trial import TrialState

    by_slot = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        slot = _slot_of(trial, draws)
        if slot is not None:
            by_slot.setdefault(slot, trial)
    return by_slot


def _budget_trials(study, draws: list[dict]) -> list:
    """The budget's trials in slot order."""
    by_slot = _trials_by_slot(study, draws)
    return [by_slot[k] for k in sorted(by_slot)]


def _next_slot(study, draws: list[dict], trials: int) -> int | None:
    done = _trials_by_slot(study, draws)
    return next((k for k in range(trials) if k not in done), None)


def _check_validation_split(config: RunConfig) -> None:
    """Carve (or find) the validation classes now, so a fraction that empties a class set
    stops before anything is written."""
    from dmlbench.data.spec import get_dataset
    from dmlbench.run.data import split_records

    split_records(get_dataset(config.dataset, config.data_root), config)


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())  # fmt: skip


def _save_plots(study, stem: Path) -> None:
    """Optuna's optimisation history and parameter importances, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix, plot in (("history", views.plot_optimization_history),
                         ("importances", views.plot_param_importances)):  # fmt: skip
        try:
            with warnings.catch_warnings():  # Optuna calls its matplotlib views experimental
                warnings.simplefilter("ignore")
                axes = plot(study)
        except (ValueError, RuntimeError):  # e.g. importances need 2+ complete trials
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        figure.set_size_inches(6.5, 4)
        figure.tight_layout()
        figure.savefig(f"{stem}-{suffix}.png", dpi=150)
        plt.close(figure)


def chosen_sweep(results: list[TuneResult], output: str, seeds: list[int]) -> str:
    """The sweep file that runs each chosen setting on the test split over ``seeds``."""
    rows = []
    for result in results:
        c = result.chosen
        row = {"label": c.label or c.method, "method": c.method, "dataset": c.dataset}
        if c.method_options:
            row["method_options"] = dict(c.method_options)
        defaults = RunConfig()
        for key in sorted(RUN_KEYS - {"label", "dataset", "output", "seed"}):
            value = getattr(c, key)
            if value != getattr(defaults, key):
                row[key] = value
        rows.append(row)
    datasets = sorted({r.pop("dataset") for r in rows})
    grid = {"output": output, "methods": rows, "datasets": datasets, "seeds": seeds}
    header = "# Written by `dmlbench tune`: each row's settings chosen on validation classes.\n"
    return header + yaml.safe_dump(grid, sort_keys=False, allow_unicode=True)


def write_if_changed(path: Path, text: str) -> bool:
    """Re-running a finished tune changes nothing: the file is rewritten only if different
    (atomically: several tuning processes may write the same file as they end)."""
    from dmlbench.atomic import write_text_atomic

    if path.exists() and path.read_text() == text:
        return False
    write_text_atomic(path, text)
    return True


def summary_line(result: TuneResult, metric: str) -> str:
    digest = hashlib.sha1(json.dumps(result.best_params, sort_keys=True).encode()).hexdigest()[:6]
    row = result.chosen.label or result.chosen.method
    return (f"{row}: best {metric} {result.best_value:.4f} with "
            f"{_params_text(result.best_params)} [{digest}], {result.trials} trials")  # fmt: skip


__all__ = ["TuneSettings", "tune", "tune_rows", "chosen_sweep", "to_yaml"]
