"""Compile a decoder loop with numba, on first use.

Where a format is decoded word by word with a running state (the time base of Prophesee EVT words
and of DAT's wrapping timestamps, the row and vector base of EVT 3.0, the variable-length events of
Event Stream, the fields of a CSV line), velora decodes it with a plain Python loop over a NumPy
array that numba compiles to machine code. The loop reads like the format's specification; NumPy
needed several passes per word to carry the state and ran slower than faery's Rust decoders, the
compiled loops run faster than them (benchmarks/README.md, "Event-file readers").

`compiled(loop)` compiles the first time a file needs the loop, so that importing velora does not
load LLVM (about 0.2 s), and caches the machine code on disk (`cache=True`, in the package's
`__pycache__`) so that later processes skip the compilation (a second or so per loop). The Python
function stays callable as is, uncompiled, for debugging and tests.

Loops compiled here must never index past an array's end: numba does not check bounds. They size
their outputs by a bound the file's length gives (or a counting pass), and check every index they
derive from file content before using it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["compiled"]


@functools.cache
def compiled(loop: Callable) -> Callable:
    """`loop` compiled by numba (nopython mode, cached on disk), built on the first call."""
    import numba  # deliberately here, not at the top: see the module docstring

    try:
        return numba.njit(cache=True, nogil=True)(loop)
    except RuntimeError:  # numba found no writable cache folder (a read-only install): compile in each process
        return numba.njit(nogil=True)(loop)
