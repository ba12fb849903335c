"""Claiming a run's directory, so that N runs started at once in one folder get N directories.

A run holds an exclusive lock (flock) on DIR/.wengert-run for as long as it writes in DIR, and
removes the file when it ends; if it is killed, the kernel lets go of the lock all the same. A new
run takes a directory only when it holds that lock and the directory holds no other file.
"""
from __future__ import annotations

import fcntl
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from .recipe import UsageError

LOCK = ".wengert-run"


@dataclass
class Claim:
    """A directory this process writes in, and the lock that says so."""

    directory: Path
    fd: int
    made: bool  # the directory did not exist before this run

    def release(self) -> None:
        """Let the directory go (its lock file removed); remove the directory too if it was made for
        this run and nothing was saved in it."""
        try:
            (self.directory / LOCK).unlink()
            if self.made and not contents(self.directory):
                self.directory.rmdir()
        except OSError:
            pass  # another run came in between: the directory is now its
        finally:
            os.close(self.fd)


def contents(directory: Path) -> list[str]:
    """The names in `directory`, but for its lock file."""
    return sorted(name for name in os.listdir(directory) if name != LOCK)


def claim_new(wanted: Path, explicit: bool, fresh: bool, kind: str = "training run") -> tuple[Claim, str]:
    """A directory for a new run (a `kind`, as messages call it), and a note if it is not `wanted`:
    `wanted` if it is free, else (when `wanted` was not given with --out, or with --fresh) the
    first free `wanted`-2, -3, ..."""
    if wanted.exists() and not wanted.is_dir():
        raise UsageError(f"--out {wanted} is a file, not a directory")
    claim = _lock(wanted)
    if claim and not contents(wanted):
        return claim, ""
    if explicit and not fresh:
        if claim is None:
            raise UsageError(f"--out {wanted} is being written by another {kind}: wait for it, "
                             f"add --fresh to write into the first free {wanted}-2, {wanted}-3, ..., or give a new --out")
        names = contents(wanted)
        claim.release()
        held = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise UsageError(f"--out {wanted} already holds files ({held}): continue its {kind} with --resume, "
                         f"add --fresh to write into the first free {wanted}-2, {wanted}-3, ..., or give a new --out")
    if claim:
        claim.release()
    for n in itertools.count(2):
        candidate = wanted.with_name(f"{wanted.name}-{n}")
        if candidate.exists() and not candidate.is_dir():
            continue
        claim = _lock(candidate)
        if claim and not contents(candidate):
            why = "holds an earlier run" if contents(wanted) else "is being written by another run"
            return claim, f"{wanted} {why}, so this one goes to {candidate}"
        if claim:
            claim.release()


def claim_existing(directory: Path, kind: str = "training run") -> Claim:
    """The directory of a run (a `kind`) to resume, refused while another run writes in it."""
    if not directory.is_dir():
        raise UsageError(f"--resume: {directory} is not a run's directory (give the --out of the {kind} to continue)")
    claim = _lock(directory, make=False)
    if claim is None:
        raise UsageError(f"--resume: {directory} is being written by another {kind}; wait for it to end")
    return claim


def _lock(directory: Path, make: bool = True) -> Claim | None:
    """Make `directory` (if `make`) and hold its lock; None while another process holds it."""
    path = directory / LOCK
    while True:
        made = False
        try:
            if make and not directory.is_dir():
                directory.mkdir(parents=True)
                made = True
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            made_meanwhile = isinstance(e, FileExistsError) and directory.is_dir()
            removed_meanwhile = isinstance(e, FileNotFoundError) and make and directory.parent.is_dir()
            if made_meanwhile or removed_meanwhile:
                continue  # by another run, between two of these steps: look again
            raise UsageError(f"cannot write in --out {directory}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return Claim(directory, fd, made)
        os.close(fd)  # its run removed the lock file as it ended: look again
