"""A search over training recipes on Dask: `python -m mlp.sweep SPEC.toml [--out DIR]`.

SPEC (TOML) says what every trial shares and what varies, in the recipe's option names (mlp.Recipe,
the keywords of mlp.fit: batch_size for --batch-size):

    dataset = "mnist-5k"
    metric = "val_accuracy"        # what picks the best trial: val_accuracy (highest) or val_loss (lowest)
    trials = 8                     # from the grid's size to 1000; more than the grid repeat it with new random draws
    seed = 0
    [fixed]                        # every trial's options
    epochs = 1
    val = 0.1
    [grid]                         # every combination of these lists
    hidden = [[16], [32]]
    dropout = [0.0, 0.2]
    [random]                       # a draw a trial: uniform, log_uniform or integers = [low, high], or choice = [...]
    lr = {log_uniform = [1e-4, 1e-2]}

Each trial is one run of the library's training loop (`mlp.training.run_training`), on a Dask
worker: an embedded LocalCluster on this machine by default (a worker a core, a trial a worker,
one compiled and one BLAS thread each), or the cluster at --scheduler tcp://HOST:PORT. A trial
runs in a directory of its worker and sends back its metrics and checkpoint, which the sweep
writes into DIR/trial-N/ (so workers need no shared disk), with a row a trial in DIR/trials.csv
as each one ends. A worker that dies has its trial run again elsewhere (Dask's scheduler does so
up to `distributed.scheduler.allowed-failures` times, 3 by default); a trial
that fails (options that do not fit together) or diverges (see `run_trial`) is a row with its
reason, never the best; a sweep that was stopped, or lost its scheduler, continues with
--resume, running only the trials without a row. The test set is never used to choose.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import itertools
import logging
import math
import multiprocessing
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import checkpoint, rundir
from ..progress import ProgressBar
from ..recipe import Recipe, positive_int
from ..training import RUNS
from . import cli, finish

METRICS = {"val_accuracy": max, "val_loss": min}  # what may choose the best trial, and how
SAMPLERS = {
    "uniform": lambda rng, low, high: float(rng.uniform(low, high)),
    "log_uniform": lambda rng, low, high: float(math.exp(rng.uniform(math.log(low), math.log(high)))),
    "integers": lambda rng, low, high: int(rng.integers(low, high + 1)),
}
MAX_TRIALS = 1000  # each trial's recipe is made, and so checked, before any runs
SET_BY_SWEEP = {  # options a trial's run takes from the sweep, not from its spec
    "dataset": "the spec's own dataset field names it",
    "out": "each trial writes in a directory of its worker, sent back to the sweep's trial-N",
    "resume": "a trial runs from its start (a stopped sweep resumes with python -m mlp.sweep --resume)",
    "fresh": "each trial writes in a directory of its worker, sent back to the sweep's trial-N",
    "plots": "a trial draws no figures; the sweep draws sweep.png",
    "threads": "a trial runs one compiled and one BLAS thread, a worker a core",
}
CONNECT_TIMEOUT = "20s"  # to reach a --scheduler
COLUMNS = ["trial", "status", "best_epoch", "val_accuracy", "val_loss", "test_accuracy", "seconds", "worker", "options",
           "reason"]


class ClusterLost(Exception):
    """The client lost its Dask scheduler: the trials it had not finished stay without a row."""


class SpecError(cli.UsageError):
    """A sweep specification that cannot run; the message names the file and the field."""


@dataclass
class Spec:
    dataset: str
    metric: str
    trials: list[dict]  # each trial's options, keyword names of mlp.fit
    varied: list[str]  # the options that differ between trials

    @classmethod
    def read(cls, path: Path) -> Spec:
        """The trials a SPEC.toml describes, each field checked, and each trial's recipe, before
        anything runs."""
        try:
            spec = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"cannot read the sweep {path}: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"{path} is not TOML: {e}") from None
        unknown = set(spec) - {"dataset", "metric", "trials", "seed", "fixed", "grid", "random"}
        if unknown:
            raise SpecError(f"{path}: unknown fields {', '.join(sorted(unknown))}; known: dataset, metric, trials, "
                            "seed, fixed, grid, random")
        dataset, metric, seed = spec.get("dataset", "mnist-5k"), spec.get("metric", "val_accuracy"), spec.get("seed", 0)
        if not isinstance(dataset, str):
            raise SpecError(f"{path}: dataset must be a data set's name, a string, got {dataset!r}")
        if not isinstance(metric, str) or metric not in METRICS:
            never = " (the test set never chooses)" if str(metric).startswith("test") else ""
            raise SpecError(f"{path}: metric {metric!r} cannot choose the best trial{never}; one of {', '.join(METRICS)}")
        if not _whole(seed) or seed < 0:
            raise SpecError(f"{path}: seed must be a whole number of at least 0, got {seed!r}")
        known = set(Recipe.__dataclass_fields__)
        fixed, grid, random = (_options(spec, part, known, path) for part in ("fixed", "grid", "random"))
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                raise SpecError(f"{path}: grid.{name} must be a non-empty list of values, got {values!r}")
        size = math.prod(map(len, grid.values()))
        count = spec.get("trials", size)
        if not _whole(count) or not size <= count <= MAX_TRIALS:
            raise SpecError(f"{path}: trials must be a whole number from the grid's {size:,} to {MAX_TRIALS:,} (each "
                            f"trial is checked before any runs), got {count!r}")
        if count > size and not random:
            raise SpecError(f"{path}: trials = {count} repeats the grid's {size} runs as they are: add [random] "
                            f"draws, or give trials = {size}")
        draws = {name: _sampler(name, distribution, path) for name, distribution in random.items()}
        rng, points = np.random.default_rng(seed), list(itertools.product(*grid.values()))
        trials = [{**fixed, **dict(zip(grid, points[i % size])), **{k: draw(rng) for k, draw in draws.items()}}
                  for i in range(count)]
        for i, options in enumerate(trials, 1):
            try:
                recipe = Recipe(dataset=dataset, **options)
            except ValueError as e:
                raise SpecError(f"{path}: trial {i} ({_shown(options)}): {e}") from None
            if not recipe.val:
                raise SpecError(f"{path}: {metric} needs a validation part: give val = 0.1 (say) in [fixed]")
        varied = [k for k in dict.fromkeys(itertools.chain(*trials)) if len({repr(t.get(k)) for t in trials}) > 1]
        return cls(dataset, metric, trials, varied)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _options(spec: dict, part: str, known: set[str], path: Path) -> dict:
    """The table `part` of the spec: options of the training program (`known`) that a trial may
    set, each in one table only."""
    table = spec.get(part, {})
    if not isinstance(table, dict):
        raise SpecError(f"{path}: [{part}] must be a table of options, got {table!r}")
    for name in table:
        if name in SET_BY_SWEEP:
            raise SpecError(f"{path}: {part}.{name} cannot be given: {SET_BY_SWEEP[name]}")
        if name not in known:
            raise SpecError(f"{path}: {part}.{name} is not an option of python -m mlp.train (see its --help; "
                            f"write batch_size for --batch-size)")
        other = next((p for p in ("fixed", "grid", "random") if p != part and name in spec.get(p, {})), None)
        if other:
            raise SpecError(f"{path}: {name} is in both [{part}] and [{other}]; give it in one")
    return table


def _sampler(name: str, distribution, path: Path) -> Callable[[np.random.Generator], object]:
    """What draws random.`name`'s values ({uniform, log_uniform or integers = [low, high]}, or
    {choice = [values]}), its bounds checked."""
    kinds = "uniform, log_uniform or integers = [low, high], or choice = [values]"
    if not isinstance(distribution, dict) or len(distribution) != 1:
        raise SpecError(f"{path}: random.{name} must be one of {{{kinds}}}, got {distribution!r}")
    (kind, bounds), = distribution.items()
    field = f"random.{name}.{kind}"
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise SpecError(f"{path}: {field} must be a non-empty list of values, got {bounds!r}")
        return lambda rng: bounds[rng.integers(len(bounds))]
    if kind not in SAMPLERS:
        raise SpecError(f"{path}: random.{name} must be one of {{{kinds}}}, got {distribution!r}")
    numbers = "whole numbers" if kind == "integers" else "finite numbers"
    fits = _whole if kind == "integers" else (lambda b: isinstance(b, (int, float)) and not isinstance(b, bool)
                                              and math.isfinite(b))
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(map(fits, bounds)):
        raise SpecError(f"{path}: {field} must be [low, high], two {numbers}, got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise SpecError(f"{path}: {field} must have low < high, got {bounds!r}")
    if kind == "log_uniform" and low <= 0:
        raise SpecError(f"{path}: {field} must have low > 0 (a logarithm's), got {bounds!r}")
    if not math.isfinite(float(high) - float(low)) or (kind == "integers" and not -2**63 <= low < high < 2**63 - 1):
        raise SpecError(f"{path}: {field} spans more than a draw can: {bounds!r}")
    return lambda rng: SAMPLERS[kind](rng, low, high)


def _shown(options: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def command(dataset: str, options: dict) -> str:
    """The training program's command line that runs these options alone."""
    from .train import flags

    return shlex.join(["python", "-m", "mlp.train", *flags({"dataset": dataset, **options})])


def run_trial(number: int, dataset: str, options: dict, threads: int = 1) -> dict:
    """One trial, on a worker: the training program's run in a directory of the worker, with
    `threads` compiled and BLAS threads; returns its outcome and its files' bytes. A trial is
    `diverged` if its loss stopped being finite, or if the model it kept is no better than
    chance: a validation loss not below ln(classes), the loss of calling every class equally
    likely (a diverged net's is far above it: SGD at lr 1e9 ends near 2e8)."""
    from threadpoolctl import threadpool_limits

    from .. import training

    began, log = time.perf_counter(), io.StringIO()
    outcome = {"trial": number, "worker": os.uname().nodename + f":{os.getpid()}"}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(threads), contextlib.redirect_stderr(log):
        try:
            recipe = Recipe(**{**options, "dataset": dataset, "out": Path(tmp) / "run", "plots": False,
                               "threads": threads})
            history = training.run_training(recipe, progress=ProgressBar)
        except training.Diverged as e:
            return outcome | {"status": "diverged", "reason": str(e), "seconds": time.perf_counter() - began}
        except (cli.UsageError, checkpoint.CheckpointError, ValueError, TypeError, ArithmeticError,
                training.RunError, OSError) as e:
            return outcome | {"status": "failed", "reason": str(e), "seconds": time.perf_counter() - began}
        files = {p.name: p.read_bytes() for p in history.out.iterdir() if p.is_file()}
    kept = next(r for r in history.rows if r["epoch"] == (history.best_epoch or history.rows[-1]["epoch"]))
    chance = math.log(len(history.dataset.classes))
    learned = kept["val_loss"] < chance
    reason = "" if learned else (f"diverged or learned nothing: its validation loss {kept['val_loss']:.4g} is not below "
                                 f"chance's ln({len(history.dataset.classes)}) = {chance:.4g}")
    return outcome | {"status": "done" if learned else "diverged", "reason": reason, "best_epoch": kept["epoch"],
                      "val_accuracy": kept["val_accuracy"], "val_loss": kept["val_loss"],
                      "test_accuracy": kept["test_accuracy"], "seconds": time.perf_counter() - began, "files": files}


class Sweep:
    """A sweep's directory: its spec, trials.csv (a row a finished trial) and a folder a trial."""

    def __init__(self, spec: Spec, directory: Path) -> None:
        self.spec, self.directory = spec, directory
        self.table = directory / "trials.csv"
        self.rows = self._finished()

    def _finished(self) -> dict[int, dict]:
        if not self.table.exists():
            return {}
        with open(self.table, newline="") as f:
            rows = list(csv.DictReader(f))
        if any(set(COLUMNS) - set(r) or not r["trial"].isdigit() for r in rows):
            raise SpecError(f"{self.table} is damaged: not the rows of a sweep's trials")
        return {int(r["trial"]): r for r in rows}

    def record(self, outcome: dict) -> None:
        """Write a finished trial's files and its row (trials.csv rewritten atomically)."""
        number = outcome["trial"]
        folder = self.directory / f"trial-{number}"
        folder.mkdir(exist_ok=True)
        for name, content in outcome.pop("files", {}).items():
            checkpoint.write_atomically(folder / name, lambda f, c=content: f.write(c))
        options = self.spec.trials[number - 1]
        self.rows[number] = {c: _cell(outcome.get(c, "")) for c in COLUMNS} | {"options": _shown(options)}
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows[n] for n in sorted(self.rows))
        checkpoint.write_atomically(self.table, lambda f: f.write(text.getvalue().encode()))

    def done(self) -> list[dict]:
        """The rows of the trials that ended better than chance: those that may be the best."""
        return [r for r in self.rows.values() if r["status"] == "done" and r[self.spec.metric]]

    def best(self) -> dict | None:
        choose = METRICS[self.spec.metric]
        return choose(self.done(), key=lambda r: float(r[self.spec.metric]), default=None)


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def connect(scheduler: str | None, workers: int | None):
    """A Dask client: of the cluster at `scheduler`, else of a LocalCluster here (a worker a core,
    one thread each, as each trial runs its own compiled threads), closed with the client."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, ValueError, TypeError) as e:
            raise cli.UsageError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e})") from None
        client_log = logging.getLogger("distributed.client")
        level = client_log.level
        try:
            with client:
                try:
                    yield client
                except ClusterLost:
                    client_log.setLevel(logging.CRITICAL)  # its reconnecting, cut short by the close: a traceback, no news
                    raise
        finally:
            client_log.setLevel(level)
        return
    with dask.config.set({"distributed.worker.multiprocessing-method": _start_method()}):
        with _interrupts_ignored():  # by the workers, which inherit it: Ctrl-C is for this process, which closes them
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                                   silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:
            yield client


@contextlib.contextmanager
def _interrupts_ignored():
    """SIGINT ignored meanwhile, if this is the main thread (the only one that may say so)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_method() -> str:
    """How the local workers start. Forked from this process they start with numpy, numba and mlp
    imported and end at once (two: 0.9 s to start, 0.1 s to close, against 3.4 s and 1.4 s spawned;
    benchmarks/RESULTS.md), but a fork does not survive compiled threads already running here (as
    in a notebook that has trained): then from a fresh server process (forkserver: ends at once too)."""
    from numba.np.ufunc import parallel

    threads_running = getattr(parallel, "_is_initialized", True)  # numba's, private: if it goes, assume so
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods and not threads_running else "forkserver" if "forkserver" in methods else "spawn"


def run(spec: Spec, sweep: Sweep, client) -> None:
    """Run the trials without a row on the client's cluster, recording each as it ends."""
    from dask.distributed import as_completed

    # matplotlib, for the figure at the end, imported while this process waits for trials
    threading.Thread(target=importlib.import_module, args=("matplotlib.figure",), daemon=True).start()
    todo = [n for n in range(1, len(spec.trials) + 1) if n not in sweep.rows]
    if len(todo) < len(spec.trials):
        print(f"{len(spec.trials) - len(todo)} trials were finished before; running the other {len(todo)}",
              file=sys.stderr)
    session = uuid.uuid4().hex  # in the tasks' keys: no other sweep on the cluster has them, whatever its folder
    futures = [client.submit(run_trial, n, spec.dataset, spec.trials[n - 1], key=f"trial-{n}-{session}", pure=False)
               for n in todo]
    bar = ProgressBar("trials", len(todo))
    for done, future in enumerate(as_completed(futures), 1):
        if future.cancelled():  # by the client, when it lost its scheduler: the trial did nothing wrong
            bar.finish()
            raise ClusterLost(_cancellation(future))
        try:
            outcome = future.result()
        except Exception as e:  # a failure of ours, or its workers died time and again (KilledWorker)
            outcome = {"trial": todo[futures.index(future)], "status": "failed", "reason": f"{type(e).__name__}: {e}"}
        sweep.record(outcome)
        best = sweep.best()
        said = f"best {spec.metric} {float(best[spec.metric]):.4f} (trial {best['trial']})" if best else "none done yet"
        line = f"{done} ended, {len(todo) - done} running or waiting; {said}"
        if not bar.shown:  # a log: a line a trial
            print(f"trial {outcome['trial']} {outcome['status']}: {line}", file=sys.stderr)
        elif done < len(todo):
            bar.update(done, line)
        else:
            bar.finish(line)


def _cancellation(future) -> str:
    """Why a cancelled future was cancelled (scheduler-connection-lost, ...)."""
    try:
        future.result()
    except BaseException as e:  # distributed's FutureCancelledError, an asyncio.CancelledError (a BaseException)
        return getattr(e, "reason", None) or type(e).__name__
    return "cancelled"


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m mlp.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", type=Path, help="the sweep: a TOML file (see examples/sweep.toml)")
    p.add_argument("--out", type=Path, help="its directory (default: the first free runs/sweep, runs/sweep-2, ...)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: run the trials without a row")
    p.add_argument("--fresh", action="store_true", help="if --out holds files, write into the first free OUT-2, OUT-3, ...")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="a Dask scheduler to run on (default: a local cluster)")
    p.add_argument("--workers", type=cli.flag_type(positive_int), help="of the local cluster (default: a worker a core)")
    args = p.parse_args(argv)
    if args.resume and args.out is None:
        p.error("--resume needs the --out of the sweep to continue")
    if args.resume and args.fresh:
        p.error("--resume continues the sweep in --out; --fresh starts a new one: give one of them")
    sweep = saved = None
    try:
        spec = Spec.read(args.spec)
        wanted = args.out or RUNS / "sweep"
        if args.resume:
            claim, note = rundir.claim_existing(wanted, kind="sweep"), ""
        else:
            claim, note = rundir.claim_new(wanted, args.out is not None, args.fresh, kind="sweep")
    except cli.UsageError as e:
        return cli.refuse(e)
    if note:
        print(note, file=sys.stderr)
    try:
        saved = claim.directory / "sweep.toml"
        if args.resume and not saved.is_file():
            raise SpecError(f"--resume: {claim.directory} is not a sweep's directory: it has no sweep.toml")
        if args.resume and saved.read_bytes() != args.spec.read_bytes():
            raise SpecError(f"cannot resume {claim.directory}: {args.spec} is not the sweep it ran ({saved})")
        sweep = Sweep(spec, claim.directory)
        print(f"sweep of {len(spec.trials)} trials ({', '.join(spec.varied) or 'nothing'} varied) on {spec.dataset}, "
              f"choosing by {spec.metric}; writing {claim.directory}", file=sys.stderr)
        with connect(args.scheduler, args.workers) as client:
            checkpoint.write_atomically(saved, lambda f: f.write(args.spec.read_bytes()))  # once a cluster runs it
            run(spec, sweep, client)
    except cli.UsageError as e:
        return cli.refuse(e)
    except ClusterLost as e:
        left = len(spec.trials) - len(sweep.rows)
        print(f"error: the sweep lost its Dask scheduler ({e}); {len(sweep.rows)} trials are recorded in {sweep.table}, "
              f"the other {left} did not run: continue on a running cluster with --resume --out {claim.directory}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        again = f"; continue with --resume --out {claim.directory}" if saved and saved.exists() else ""
        print(f"interrupted: {len(sweep.rows) if sweep else 0} trials are recorded in {claim.directory / 'trials.csv'}"
              f"{again}", file=sys.stderr)
        return 130
    finally:
        claim.release()
    from .. import plots

    points = [(int(r["trial"]), spec.trials[int(r["trial"]) - 1], float(r[spec.metric])) for r in sweep.done()]
    plots.sweep(points, spec.varied, spec.metric).save(claim.directory / "sweep.png")
    best = sweep.best()
    if best is None:
        print(f"no trial ended better than chance; {sweep.table} says why", file=sys.stderr)
        return 1
    print(f"best trial: {best['trial']}, {spec.metric} {float(best[spec.metric]):.4f} (test accuracy "
          f"{100 * float(best['test_accuracy']):.2f}%), in {claim.directory / ('trial-' + best['trial'])}")
    print(f"run it alone: {command(spec.dataset, spec.trials[int(best['trial']) - 1])}")
    return 0


if __name__ == "__main__":
    finish(main())
