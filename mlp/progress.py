"""Progress of a long task (a download, a training epoch, a sweep's trials) on one line, where
someone watches it redrawn in place: in a Jupyter kernel (JupyterLab, VS Code, nbclient and
nbconvert alike) one display output updated in place, so an executed notebook keeps one output a
bar, ending as its finished line; in a terminal a line on stderr redrawn by a carriage return.
Elsewhere (a pipe, a log file, CI) only the finished lines are written, one a task."""
from __future__ import annotations

import functools
import sys
import threading
import time


class ProgressBar:
    """`label [#####-----]  50% text` redrawn in place (at most ten times a second) while it runs,
    then `label  text` as its finished line. `shown` forces the redrawn bar on (True: on stderr
    where there is no notebook) or off (False: the finished line only); None decides by where it runs."""

    WIDTH = 20

    def __init__(self, label: str, total: int = 0, shown: bool | None = None) -> None:
        self.label, self.total = label, total
        self.notebook = shown is not False and in_notebook()
        self.shown = self.notebook or (sys.stderr.isatty() if shown is None else shown)
        self.drawn, self.last, self.handle = "", 0.0, None

    def due(self, done: int) -> bool:
        """Whether `update(done, ...)` would redraw the bar now (so its text is worth making)."""
        return self.shown and (done >= self.total or time.monotonic() - self.last >= 0.1)

    def update(self, done: int, text: str = "") -> None:
        if not self.due(done):
            return
        self.last = time.monotonic()
        self._draw(self._line(done, text))

    def finish(self, text: str = "") -> None:
        """End the bar: its finished line `label  text`, or (without text) leave what is drawn."""
        if text:
            self._draw(f"{self.label}  {text}", final=True)
        elif self.drawn and not self.notebook:
            sys.stderr.write("\n")
        self.drawn, self.handle = "", None

    def _line(self, done: int, text: str) -> str:
        if not self.total:
            return f"{self.label}  {text}"
        fraction = min(done / self.total, 1.0)
        filled = round(fraction * self.WIDTH)
        return f"{self.label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {fraction:4.0%}  {text}"

    def _draw(self, line: str, final: bool = False) -> None:
        if self.notebook:
            from IPython.display import display

            shown = {"text/plain": line}
            if self.handle is None:
                self.handle = display(shown, raw=True, display_id=True)
            else:
                self.handle.update(shown, raw=True)
        elif self.shown:
            sys.stderr.write("\r" + line.ljust(len(self.drawn)) + "\n" * final)  # covering a longer previous line
            sys.stderr.flush()
        else:  # a log: only finish() draws
            sys.stderr.write(line + "\n")
        self.drawn = line


def say(text: str) -> None:
    """A line of a run's narration ("training ...", "kept the model of epoch 3 ..."): in a
    notebook on stdout (not the error box), elsewhere on stderr (the program's stdout keeps its result)."""
    print(text, file=sys.stdout if in_notebook() else sys.stderr, flush=True)


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel, whose frontends update a display output in place."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has it already
    shell = ipython.get_ipython() if ipython else None
    return shell is not None and hasattr(shell, "kernel")


class Stopwatch:
    """`with Stopwatch() as clock:` times the block: `clock.seconds()` since it started (until it
    ended), less `clock.compiling()`, the seconds this thread spent in numba's compiler (compiling
    a kernel on first use, loading it from numba's cache, or waiting for another thread's compiling),
    so a first run's epoch is timed as the later ones."""

    def __enter__(self) -> Stopwatch:
        from numba.core import event

        self.compiler = _thread_timer()()
        event.register("numba:compiler_lock", self.compiler)
        self.start, self.end = time.perf_counter(), None
        return self

    def __exit__(self, *exc) -> None:
        from numba.core import event

        self.end = time.perf_counter()
        event.unregister("numba:compiler_lock", self.compiler)

    def compiling(self) -> float:
        return self.compiler.duration if self.compiler.done else 0.0

    def seconds(self) -> float:
        return (self.end or time.perf_counter()) - self.start - self.compiling()


@functools.cache
def _thread_timer() -> type:
    """numba's timer of events, made to count those of the thread that makes it only (numba's
    listeners hear every thread's; numba is imported on first use, not with mlp)."""
    from numba.core import event

    class ThreadTimer(event.TimingListener):
        def __init__(self) -> None:
            super().__init__()
            self.thread = threading.get_ident()

        def notify(self, happened) -> None:
            if threading.get_ident() == self.thread:
                super().notify(happened)

    return ThreadTimer
