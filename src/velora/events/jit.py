"""Compile a decoder loop with numba, on first use.

The binary event formats whose decoding is a state machine (Prophesee EVT words, Event Stream bytes)
are decoded by plain Python loops over a NumPy array that numba compiles to machine code: the loop
reads like the format's specification, and runs 2-5x faster than the Rust decoders of faery, where
NumPy array passes (several forward fills and gathers per word) ran slower than them.

`compiled(loop)` compiles the first time a file needs the loop, so that importing velora does not
load LLVM (about 0.2 s), and caches the machine code on disk (`cache=True`, next to the module's
`__pycache__`) so later processes load it in milliseconds. The Python function stays callable as is,
uncompiled, for debugging and tests.

Loops compiled here must never index past an array's end: numba does not check bounds. They size
their outputs with a counting pass first and check every index they derive from file content.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["compiled"]


@functools.cache
def compiled(loop: Callable) -> Callable:
    """`loop` compiled by numba (nopython mode, cached on disk), built on the first call."""
    import numba  # deliberately here, not at the top: see the module docstring

    return numba.njit(cache=True, nogil=True)(loop)
