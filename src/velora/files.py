"""Writing files so that a failed write (no space left, no permission) or a crash never costs the
previous version: checkpoints and adapter files are replaced atomically.

    write_atomically(path, lambda tmp: torch.save(state, tmp), "resume checkpoint")

The new content goes to `<name>.tmp` beside `path`, is flushed to disk, then renamed over `path`,
so `path` is always the old file or the new one, whole. A write that fails removes the temporary
file and raises one OutputError naming `path`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from velora.errors import OutputError


def write_atomically(
    path: str | Path, write: Callable[[Path], object], what: str, errors: tuple[type[BaseException], ...] = (OSError,)
) -> Path:
    """Write `path` with `write(tmp)` (which writes the whole file at `tmp`) and rename it into place.

    `errors`: what `write` raises when the disk refuses (OSError, plus a library's own error type).
    Raises OutputError naming `path` and the reason; the previous `path`, if any, is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        sync_file(tmp)
        os.replace(tmp, path)
    except errors as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        reason = getattr(error, "strerror", None) or str(error)
        kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
        raise OutputError(
            f"cannot write the {what} {path} ({reason}); {kept}. Free disk space or check the folder's permissions"
        ) from None
    return path


def sync_file(path: Path) -> None:
    """Flush a written file to disk before it is renamed over the previous version."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
