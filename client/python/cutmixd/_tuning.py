"""Process-wide tuning of the receive path (opt-in: it changes the whole
process's malloc, so the client never does it by itself)."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest (64-bit): batches up to 32 MiB
TRIM_THRESHOLD = 256 << 20


def reuse_receive_buffers() -> bool:
    """Let glibc's malloc keep the memory of received batches for the next
    ones instead of mapping fresh pages for each (ZeroMQ allocates every
    message; a batch above malloc's mmap threshold costs one page fault per
    4 KiB, ~1,100 per 224x224x128 batch, measured by
    scripts/measure_client_cpu.py: about a third of the receiving process's
    CPU). Sets M_MMAP_THRESHOLD to 32 MiB and M_TRIM_THRESHOLD to 256 MiB
    for the whole process: up to that much freed memory stays in the
    process (its RSS) for reuse. True if applied; False where the C library
    is not glibc. Call it once, early (before the first batch)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
