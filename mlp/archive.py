"""The file a model is kept in: an `.npz` archive of its weights (and those of a run: its best
model, its optimizer's state) beside a JSON record, written atomically and read back checked.
`mlp.checkpoint` keeps a run in it, `MLP.save` a model alone; this module knows neither class."""
from __future__ import annotations

import functools
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

FORMAT = 1
PARTS = ("model", "best", "optimizer")  # the archive's arrays are named part/name
ALONE = {"epoch": 0, "optimizer": "sgd", "optimizer_options": {}, "rng_state": None, "args": {}}  # a model without a run


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back; the message names the file."""


def model_config(model) -> dict:
    """What rebuilds a model (an MLP) besides its weights."""
    return {"sizes": model.sizes, "activation": model.activation, "bias": model.bias, "init": model.init_name,
            "dropout": model.dropout}


def write(path: str | os.PathLike, model, record: dict, parts: dict[str, dict] | None = None,
          later: Callable[[Callable[[], None]], object] | None = None) -> None:
    """Write `model` (its configuration and weights), the fields `record` and the arrays of `parts`
    (best, optimizer) to `path`: to a temporary file beside it first, then put in place (see
    `write_atomically`, and its `later`)."""
    path = Path(path)
    meta = {"format": FORMAT, "model": model_config(model), **record}
    arrays = {f"{part}/{k}": np.asarray(v) for part, named in {"model": model.state_dict(), **(parts or {})}.items()
              for k, v in named.items()}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **arrays), later)


def write_atomically(path: Path, write: Callable[[BinaryIO], object],
                     later: Callable[[Callable[[], None]], object] | None = None) -> None:
    """Fill a temporary file beside `path` with `write(file)`, then put it in place: on the disk
    (fsync), renamed to `path`. A reader finds the old content or the new one, never half of one.
    `later(job)`, if given, takes that last part to run when it will (on a thread of its own: it
    waits on the disk); the job removes the file and raises if it cannot put it in place."""
    mode = 0o666 & ~_umask()  # an ordinary file's (mkstemp makes it private); the umask read on this thread
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    job = functools.partial(_put_in_place, Path(tmp), path, mode)
    if later is None:
        job()
    else:
        later(job)


def _put_in_place(tmp: Path, path: Path, mode: int) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read(path: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """The record and the arrays (by part: model, best, optimizer) of a file `write` wrote, each
    field checked; anything else (an empty or truncated file, a directory, weights that are not
    finite) raises `CheckpointError` naming the file."""
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
            parts = {part: {k[len(part) + 1:]: f[k] for k in f.files if k.startswith(part + "/")} for part in PARTS}
        _check_fields(meta, path)
        config = meta["model"]
        sizes = [int(n) for n in config["sizes"]]
        stored = sum(a.size for a in parts["model"].values())
        if stored != sum(m * n + n * bool(config["bias"]) for m, n in zip(sizes, sizes[1:])):
            raise CheckpointError(f"{path} holds {stored:,} weights, not those of a {sizes} model")
        for part in ("model", "best"):
            values = np.concatenate([np.ravel(a) for a in parts[part].values()] or [np.zeros(0)]).astype(np.float64)
            if not np.isfinite(values).all():
                bad = np.count_nonzero(~np.isfinite(values))
                raise CheckpointError(f"{path}: {bad:,} of its {len(values):,} weights are not finite numbers (a run "
                                      f"that diverged)")
    except CheckpointError:
        raise
    except (OSError, EOFError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise unreadable(path, e) from None
    return meta, parts


def unreadable(path: Path, error: Exception) -> CheckpointError:
    """The error of a file that is no readable checkpoint, with the reason."""
    return CheckpointError(f"{path} is not a readable wengert checkpoint ({type(error).__name__}: {error})")


def wrong(path: Path, field: str, expected: str, got: object) -> CheckpointError:
    """The error of a field of the record with a wrong value (a hand-edited file), naming it."""
    return CheckpointError(f"{path}: {field} should be {expected}, got {json.dumps(got)[:60]}")


def _check_fields(meta: object, path: Path) -> None:
    """Refuse a checkpoint whose fields have the wrong types (a hand-edited file), naming the field."""
    if not isinstance(meta, dict):
        raise wrong(path, "meta", "an object", meta)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this version reads {FORMAT}")
    expected = {"model": (dict, "an object"), "epoch": (int, "an integer >= 0"), "optimizer": (str, "an optimizer's name"),
                "optimizer_options": (dict, "an object"), "args": (dict, "an object"),
                "rng_state": ((dict, type(None)), "an object or null")}
    for field, (kind, words) in expected.items():
        value = meta.get(field)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise wrong(path, field, words, value)
    sizes = meta["model"].get("sizes")
    if not (isinstance(sizes, list) and len(sizes) >= 2 and all(type(n) is int and n > 0 for n in sizes)):
        raise wrong(path, "model.sizes", "a list of two or more positive integers", sizes)
    if "best" in meta:
        best = meta["best"]
        if not isinstance(best, dict):
            raise wrong(path, "best", "an object", best)
        if type(best.get("epoch")) is not int or not 1 <= best["epoch"] <= meta["epoch"]:
            raise wrong(path, "best.epoch", f"an epoch from 1 to {meta['epoch']}", best.get("epoch"))
        if best.get("metric") not in ("val_loss", "val_accuracy"):
            raise wrong(path, "best.metric", '"val_loss" or "val_accuracy"', best.get("metric"))
        if type(best.get("value")) not in (int, float):
            raise wrong(path, "best.value", "a number", best.get("value"))
