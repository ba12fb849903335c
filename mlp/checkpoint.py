"""Checkpoints: a model, its optimizer's state, the epoch, the RNG state and the arguments of a
run, and the model of its best validation epoch if it kept one, in one `.npz` file written
atomically (a half-written file never replaces a good one)."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .nn import MLP
from .optim import OPTIMIZERS, Optimizer

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back; the message names the file."""


@dataclass
class Best:
    """The model of a run's best validation epoch, kept beside the last epoch's."""

    model: MLP
    epoch: int
    metric: str  # what made it the best: "val_loss" (lowest) or "val_accuracy" (highest)
    value: float


@dataclass
class Checkpoint:
    model: MLP  # the last epoch's, which a resumed run continues from
    epoch: int  # epochs completed
    optimizer: str = "sgd"  # its name in OPTIMIZERS
    optimizer_options: dict = field(default_factory=dict)  # lr, betas, ...
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    rng_state: dict | None = None  # numpy Generator.bit_generator.state
    args: dict = field(default_factory=dict)  # the run's arguments, as given
    best: Best | None = None

    @property
    def kept(self) -> MLP:
        """The model the run reports: its best validation epoch's, if it kept one, else the last."""
        return self.best.model if self.best else self.model

    def make_optimizer(self) -> Optimizer:
        """The optimizer, with its state restored, on the checkpoint's model."""
        opt = OPTIMIZERS[self.optimizer](self.model.parameters(), **self.optimizer_options)
        if self.optimizer_state:
            opt.load_state_dict(self.optimizer_state)
        return opt


def save(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path`: to a temporary file beside it first, then renamed."""
    path = Path(path)
    model = checkpoint.model
    meta = {
        "format": FORMAT,
        "model": {"sizes": model.sizes, "activation": model.activation, "bias": model.bias, "init": model.init_name,
                  "dropout": model.dropout},
        "epoch": checkpoint.epoch,
        "optimizer": checkpoint.optimizer,
        "optimizer_options": checkpoint.optimizer_options,
        "rng_state": checkpoint.rng_state,
        "args": checkpoint.args,
    }
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if checkpoint.best:
        best = checkpoint.best
        meta["best"] = {"epoch": best.epoch, "metric": best.metric, "value": best.value}
        arrays.update({f"best/{k}": v for k, v in best.model.state_dict().items()})
    arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in checkpoint.optimizer_state.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Fill a temporary file beside `path` with `write(file)`, then rename it to `path`: a
    reader finds the old content or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; this is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save`; the model is rebuilt on a tape of its own. Anything
    else (an empty or truncated file, a directory, weights that are not finite) raises
    `CheckpointError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint (give the model.npz inside it)")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a wengert checkpoint")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a wengert checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            model_state, optimizer_state, best_state = ({k[len(part):]: f[k] for k in f.files if k.startswith(part)}
                                                        for part in ("model/", "optimizer/", "best/"))
        _check_fields(meta, path)
        config = meta["model"]
        sizes = [int(n) for n in config["sizes"]]
        stored = sum(a.size for a in model_state.values())
        if stored != sum(m * n + n * bool(config["bias"]) for m, n in zip(sizes, sizes[1:])):
            raise CheckpointError(f"{path} holds {stored:,} weights, not those of a {sizes} model")
        model = _model(config, model_state)
        checkpoint = Checkpoint(
            model=model,
            epoch=meta["epoch"],
            optimizer=meta["optimizer"],
            optimizer_options=meta["optimizer_options"],
            optimizer_state=optimizer_state,
            rng_state=meta["rng_state"],
            args=meta["args"],
        )
        if "best" in meta:
            kept = meta["best"]
            checkpoint.best = Best(_model(config, best_state), kept["epoch"], kept["metric"], float(kept["value"]))
        if checkpoint.optimizer_options or checkpoint.optimizer_state:  # a run's, not a model's alone
            checkpoint.make_optimizer()  # its options and state fit the model
        if checkpoint.rng_state is not None:
            np.random.default_rng().bit_generator.state = checkpoint.rng_state
    except CheckpointError:
        raise
    except (OSError, EOFError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable wengert checkpoint ({type(e).__name__}: {e})") from None
    for model in (checkpoint.model, checkpoint.kept):
        values = model.parameters().values
        if not np.isfinite(values).all():
            bad = np.count_nonzero(~np.isfinite(values))
            raise CheckpointError(f"{path}: {bad:,} of its {len(values):,} weights are not finite numbers (a run that diverged)")
    return checkpoint


def _check_fields(meta: object, path: Path) -> None:
    """Refuse a checkpoint whose fields have the wrong types (a hand-edited file), naming the field."""
    def wrong(field: str, expected: str, got: object) -> CheckpointError:
        return CheckpointError(f"{path}: {field} should be {expected}, got {json.dumps(got)[:60]}")

    if not isinstance(meta, dict):
        raise wrong("meta", "an object", meta)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this version reads {FORMAT}")
    expected = {"model": (dict, "an object"), "epoch": (int, "an integer >= 0"), "optimizer": (str, "an optimizer's name"),
                "optimizer_options": (dict, "an object"), "args": (dict, "an object"),
                "rng_state": ((dict, type(None)), "an object or null")}
    for field, (kind, words) in expected.items():
        value = meta.get(field)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise wrong(field, words, value)
    if meta["optimizer"] not in OPTIMIZERS:
        raise wrong("optimizer", f"one of {', '.join(OPTIMIZERS)}", meta["optimizer"])
    sizes = meta["model"].get("sizes")
    if not (isinstance(sizes, list) and len(sizes) >= 2 and all(type(n) is int and n > 0 for n in sizes)):
        raise wrong("model.sizes", "a list of two or more positive integers", sizes)
    if "best" in meta:
        best = meta["best"]
        if not isinstance(best, dict):
            raise wrong("best", "an object", best)
        if type(best.get("epoch")) is not int or not 1 <= best["epoch"] <= meta["epoch"]:
            raise wrong("best.epoch", f"an epoch from 1 to {meta['epoch']}", best.get("epoch"))
        if best.get("metric") not in ("val_loss", "val_accuracy"):
            raise wrong("best.metric", '"val_loss" or "val_accuracy"', best.get("metric"))
        if type(best.get("value")) not in (int, float):
            raise wrong("best.value", "a number", best.get("value"))


def _model(config: dict, state: dict[str, np.ndarray]) -> MLP:
    """The model a checkpoint's configuration describes, with the weights `state`."""
    model = MLP([int(n) for n in config["sizes"]], activation=config["activation"], bias=config["bias"],
                init=config["init"], dropout=config.get("dropout", 0.0))
    model.load_state_dict(state)
    return model
