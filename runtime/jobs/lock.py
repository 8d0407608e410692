"""One job per output: an exclusive lock beside the output that the OS drops when its process ends.

`flock` on a sidecar file (`.<output name>.lock`, holding the pid): a second run on the same output
is refused at once, naming the running one; a run killed with SIGKILL leaves no stale lock (the
kernel releases it with the process), so a resume just works. Readers of the output never see the
lock: it is advisory and on another file. The sidecar stays after the run (removing it would let two
runs lock two different files of one name); it is safe to delete when no run is going.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import CorpusError


def lock_path(output: Path) -> Path:
    """`.<name>.lock` beside the output, by its real path (a symlink and its target share one lock)."""
    real = Path(output).resolve()
    if not real.name:
        raise CorpusError(f"{output}: not a usable output (the root folder); choose a file or folder inside one")
    return real.with_name(f".{real.name}.lock")


@contextlib.contextmanager
def exclusive_output(output: Path) -> Iterator[Path]:
    """Hold the output's lock for the body; CorpusError naming the holder's pid if another run has it."""
    path = lock_path(Path(output))
    try:  # never through a planted symlink: the pid is written into the file
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot create the output's lock file ({exc.strerror or exc})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(50):  # the holder writes its pid just after it locks: give it that moment
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                if holder:
                    break
                time.sleep(0.01)
            raise CorpusError(f"{output}: another run is writing this output (pid {holder or 'unknown'}, lock {path}); "
                              f"wait for it to end, or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # no pid left behind for a later run's refusal to name
    finally:
        os.close(fd)  # closing the descriptor releases the lock (and so does the process ending)
