"""Give freed heap pages back to the OS between chunks of one call (glibc only; elsewhere a no-op)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None


def release_memory() -> bool:
    """`malloc_trim(0)`: many runs in one call fragment glibc's per-thread heaps, which then keep
    hundreds of MB resident after the call; trimming returns the free pages. True if it ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
