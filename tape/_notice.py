"""A line on stdout before numba compiles a kernel that its cache does not hold: the first use
after an install (or an edit) compiles for seconds, which would otherwise pass in silence.

numba announces a compilation with its "numba:compile" event only when neither its memory nor
its on-disk cache has the function for these argument types, so a cache hit prints nothing.
Importing this module does not import numba: `announce_compiling` does, when first called.
"""
from __future__ import annotations

ANNOUNCED: dict[str, str] = {}  # module -> what its kernels are, in a user's words
_said: set[str] = set()  # what this process has announced already (once each)
_listening = False


def announce_compiling(module: str, what: str) -> None:
    """Print "compiling {what} with numba ..." on stdout before numba first compiles a function
    of `module` (a module's __name__) because its cache lacks it: once per `what` in a process,
    however many of its functions compile. Later runs load them from the cache and say nothing."""
    global _listening
    ANNOUNCED[module] = what
    if not _listening:
        from numba.core import event

        event.register("numba:compile", _listener(event.Listener))
        _listening = True


def _listener(base: type):
    """A numba event listener announcing the outermost compilation of a function of an announced
    module (the functions it calls compile inside it)."""

    class Announcer(base):
        depth = 0

        def on_start(self, event) -> None:
            self.depth += 1
            what = ANNOUNCED.get(getattr(event.data["dispatcher"].py_func, "__module__", ""))
            if self.depth == 1 and what is not None and what not in _said:
                _said.add(what)
                print(f"compiling {what} with numba (first use only: cached for later runs) ...", flush=True)

        def on_end(self, event) -> None:
            self.depth -= 1

    return Announcer()
