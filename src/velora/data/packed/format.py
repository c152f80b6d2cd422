"""The packed format's names and its index: atomic writes and validated reads (see velora.data.packed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from velora.data.names import FRAME_PAIRINGS, MODALITIES
from velora.errors import DataError
from velora.events.resize import EVENT_RESIZE

FORMAT = "velora-packed"
VERSION = 1
INDEX_FILE = "index.json"
SHARD_NAME = "shard_{:05d}.bin"
DEFAULT_SHARD_BYTES = 1 << 30
FULL_FRAME = (0.0, 0.0, 1.0, 1.0)
# Header fields added after version 1 was first written, with the value an index without them was
# written with: RGB and event frames were then paired by position.
LATER_FIELDS = {"frame_pairing": "position"}


def flush_to_disk(file) -> None:
    file.flush()
    os.fsync(file.fileno())


def write_index(out_dir: Path, index: dict) -> None:
    tmp = out_dir / (INDEX_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        json.dump(index, file, separators=(",", ":"))
        flush_to_disk(file)
    os.replace(tmp, out_dir / INDEX_FILE)


def read_index(root: Path, missing_ok: bool = False) -> dict | None:
    path = root / INDEX_FILE
    if not path.is_file():
        if missing_ok:
            return None
        raise DataError(
            f"{path} does not exist; {root} is not a packed dataset. Pack one with "
            "velora.data.packed.pack_dataset (the `velora convert packed` command)"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        header = index["header"]
        written_by = header.get("format"), header.get("version")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path} is not a valid packed index ({error}); delete {root} and pack again") from None
    if written_by != (FORMAT, VERSION):
        raise DataError(
            f"{path} is format {written_by[0]!r} version {written_by[1]!r}; this "
            f"velora reads {FORMAT!r} version {VERSION}. Delete {root} and pack again"
        )
    for name, written_with in LATER_FIELDS.items():
        header.setdefault(name, written_with)
    problems = index_problems(index)
    if problems:
        raise DataError(f"{path} is not a valid packed index ({'; '.join(problems[:3])}); delete {root} and pack again")
    return index


def packed_event_resize(header: dict) -> object:
    """How a packed dataset's event images were resized (velora.events.resize). Data packed before
    data.event_resize existed records PIL's filter under "event_resample" ("nearest" or "box")."""
    return header.get("event_resize", header.get("event_resample"))


def index_problems(index: dict) -> list[str]:
    """What in an index (format and version already checked) does not have the layout of the module
    docstring; empty when every field the readers use has its type and range."""

    def natural(value, below: int = 1 << 63) -> bool:  # int64 offsets and counts
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < below

    def strings(value) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    header, problems = index["header"], []
    modalities = header.get("modalities")
    if not (natural(header.get("image_size")) and header["image_size"] > 0):
        problems.append(f"header.image_size {header.get('image_size')!r} is not a positive integer")
    if not (
        strings(modalities)
        and modalities
        and set(modalities) <= set(MODALITIES)
        and len(set(modalities)) == len(modalities)
    ):
        problems.append(f"header.modalities {modalities!r} is not a list of distinct names from {MODALITIES}")
        modalities = []
    if not strings(header.get("class_names")):
        problems.append("header.class_names is not a list of names")
    if packed_event_resize(header) not in EVENT_RESIZE:
        problems.append(f"header.event_resize {packed_event_resize(header)!r} is not one of {EVENT_RESIZE}")
    if header.get("frame_pairing") not in FRAME_PAIRINGS:
        problems.append(f"header.frame_pairing {header.get('frame_pairing')!r} is not one of {FRAME_PAIRINGS}")
    splits = index.get("splits")
    if not (isinstance(splits, dict) and all(strings(samples) for samples in splits.values())):
        problems.append("splits is not a mapping of split names to lists of samples")
    clips = index.get("clips")
    if not isinstance(clips, list):
        return [*problems, "clips is not a list"]
    for number, clip in enumerate(clips):
        ok = (
            isinstance(clip, dict)
            and isinstance(clip.get("sample"), str)
            and all(natural(clip.get(key)) for key in ("label", "frames", "shard"))
            and clip["frames"] > 0
            and isinstance(clip.get("offsets"), dict)
            and set(modalities) <= set(clip["offsets"])
            and all(natural(offset) for offset in clip["offsets"].values())
            and natural(clip.get("crc32"), below=1 << 32)
        )
        if not ok:
            problems.append(f"clip record {number} is malformed: {json.dumps(clip)[:200]}")
            break
    return problems
