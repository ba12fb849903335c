"""The progress of a task and a run's narration where it is watched: a terminal (a line redrawn by
carriage returns on stderr), a log (finished lines only), a Jupyter kernel (one display output
updated in place, and narration on stdout); and the epoch clock that leaves numba's compiling out."""
import importlib.util
import io
import re
import sys
import threading
import time
from pathlib import Path

import numba
import nbformat
import pytest

import mlp
from conftest import stand_in_digits
from mlp import progress
from mlp.progress import ProgressBar, Stopwatch

ROOT = Path(__file__).resolve().parents[1]
WIDE = 92  # characters a line may have: an 850-pixel output area shows 93 unwrapped (nbconvert, JupyterLab)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_terminal_the_bar_is_redrawn_in_place_and_ends_as_its_finished_line(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = ProgressBar("epoch 1/3", 200)
    assert bar.shown and bar.due(0)
    bar.update(50, "loss 0.5")
    bar.update(60, "too soon")  # within a tenth of a second: not drawn
    bar.last = 0.0
    bar.update(200, "loss 0.25")
    bar.finish("done")
    assert sys.stderr.getvalue() == ("\repoch 1/3 [#####---------------]  25%  loss 0.5"
                                     "\repoch 1/3 [####################] 100%  loss 0.25"
                                     "\repoch 1/3  done" + " " * 33 + "\n")  # covering the longer bar


def test_in_a_log_only_the_finished_lines_are_written(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = ProgressBar("epoch 1/3", 200)
    assert not bar.shown and not bar.due(200)
    bar.update(200, "loss 0.25")
    bar.finish("done")
    ProgressBar("file.bin", 10).finish()  # a download's end: nothing to end
    assert sys.stderr.getvalue() == "epoch 1/3  done\n"


def test_asked_for_the_bar_is_drawn_on_a_log_and_refused_it_is_not(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    shown = ProgressBar("file.bin", 4, shown=True)
    shown.update(4, "4 bytes")
    shown.finish()
    hidden = ProgressBar("file.bin", 4, shown=False)
    hidden.update(4, "4 bytes")
    hidden.finish()
    assert sys.stderr.getvalue() == "\rfile.bin [####################] 100%  4 bytes\n"


def test_a_bar_without_a_total_shows_its_text_alone(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = ProgressBar("file.bin")
    bar.update(0, "1.5 MB")
    assert sys.stderr.getvalue() == "\rfile.bin  1.5 MB"


def test_narration_goes_to_stderr_outside_a_notebook(capsys):
    progress.say("training ...")
    assert capsys.readouterr() == ("", "training ...\n")
    assert not progress.in_notebook()


def test_the_stopwatch_leaves_out_the_seconds_numba_spends_compiling():
    @numba.njit(cache=False)
    def fresh(x):  # a new function: compiled at its first call, inside the block
        return x + 1.0

    started = time.perf_counter()
    with Stopwatch() as clock:
        fresh(1.0)
        time.sleep(0.05)
    wall = time.perf_counter() - started
    assert 0 < clock.compiling() < wall
    assert clock.seconds() >= 0.05 and clock.seconds() + clock.compiling() <= wall
    with Stopwatch() as again:
        fresh(2.0)  # compiled already
        elsewhere = threading.Thread(target=numba.njit(cache=False)(lambda x: x - 1.0), args=(1.0,))
        elsewhere.start()
        elsewhere.join()  # another thread's compiling: not this one's
    assert again.compiling() == 0.0
    stopped = clock.seconds()
    time.sleep(0.01)
    assert clock.seconds() == stopped  # the block's, not the time since


def test_a_runs_lines_fit_a_notebooks_output_area_and_say_what_happened(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is redrawn too
    monkeypatch.chdir(tmp_path)
    mlp.fit(mlp.MLP([784, 8, 10], seed=0), stand_in_digits(400, 100), epochs=10, val=0.2, batch_size=16,
            out="runs/notebook", plots=False)
    err = capsys.readouterr().err
    lines = [frame for line in err.splitlines() for frame in line.split("\r") if frame]
    assert lines and max(len(line.rstrip()) for line in lines) <= WIDE
    finished = [line.rstrip() for line in lines if line.startswith("epoch") and "[" not in line]
    pattern = (r"epoch (\d+)/10  loss \d\.\d{4}  accuracy \d+\.\d%, val \d+\.\d%( \(best\))?, test \d+\.\d%  "
               r"[\d,]+ samples/s")
    assert [int(re.fullmatch(pattern, line).group(1)) for line in finished] == list(range(1, 11))
    compiled = [line for line in lines if line.startswith("(epoch ")]  # epoch 1's, if numba's cache was cold
    assert len(compiled) <= 1 and all(line.startswith("(epoch 1 also spent ") for line in compiled), compiled
    assert re.fullmatch(r"training a 784-8-10 sigmoid MLP with adam on 3\d\d mnist-5k samples \(100 test\)", lines[0])
    assert lines[1] == "writing runs/notebook"
    assert re.fullmatch(r"kept the model of epoch \d+, the best val_loss \(\d\.\d+\) of 10 epochs", lines[-1])


def test_an_epoch_that_compiled_for_a_second_or_more_says_so_in_a_line_after_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Stopwatch, "compiling", lambda self: 12.34)
    mlp.fit(mlp.MLP([784, 4, 10], seed=0), stand_in_digits(200, 50), epochs=2, out=tmp_path, plots=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-3:] == ["(epoch 1 also spent 12.3 s compiling numba's kernels, now cached; not in its time)",
                          lines[-2], "(epoch 2 also spent 12.3 s compiling numba's kernels, now cached; not in its time)"]
    assert lines[-2].startswith("epoch 2/2  loss ") and max(map(len, lines)) <= WIDE


needs_kernel = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("nbclient", "ipykernel")),
                                  reason="a Jupyter kernel needs nbclient and ipykernel (pip install -e '.[test]')")


@needs_kernel
def test_in_a_notebook_a_bar_is_one_output_updated_in_place_and_narration_is_on_stdout(tmp_path, monkeypatch):
    """Executed by nbclient (as nbconvert --execute and the tests do) every redraw updates the one
    display output, which the notebook keeps as the bar's finished line."""
    import nbclient

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this tree's mlp
    cell = ("import time\n"
            "from mlp.progress import ProgressBar, in_notebook, say\n"
            "say(f'in a notebook: {in_notebook()}')\n"
            "bar = ProgressBar('epoch 1/1', 100)\n"
            "for done in range(1, 101):\n"
            "    bar.update(done, f'{done} done')\n"
            "    time.sleep(0.004)\n"
            "bar.finish('all done')\n"
            "say('kept')")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    updates = []
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    process = client.process_message

    def counted(msg, cell, cell_index):
        if msg["msg_type"] == "update_display_data":
            updates.append(msg["content"]["data"]["text/plain"])
        return process(msg, cell, cell_index)

    client.process_message = counted
    client.execute()
    outputs = [(o.output_type, o.get("name"), o.get("text", o.get("data", {}).get("text/plain")))
               for o in notebook.cells[0].outputs]
    assert outputs == [("stream", "stdout", "in a notebook: True\n"),
                       ("display_data", None, "epoch 1/1  all done"),
                       ("stream", "stdout", "kept\n")]
    assert len(updates) >= 3 and updates[-1] == "epoch 1/1  all done"  # redrawn as it ran, then finished
    assert updates[-2].startswith("epoch 1/1 [####################] 100%  100 done")
