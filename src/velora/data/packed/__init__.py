"""Packed clips: every frame pre-resized to S x S uint8, in shard files read through memory maps.

Decoding and resizing PNGs dominates the cost of ClipDataset; a packed dataset pays it once. All
frames of a clip are stored (not T of them), so training still draws fresh frame offsets and crops
every epoch. Layout of a packed folder::

    <out_dir>/index.json        header, splits and clip records; replaced atomically on each commit
    <out_dir>/shard_00000.bin   raw uint8 bytes, clips appended back to back (no file header)
    <out_dir>/shard_00001.bin   a new shard starts when the next clip would pass shard_bytes

index.json::

    {"header": {"format": "velora-packed", "version": 1, "image_size": S,
                "modalities": ["rgb", "event"], "class_names": [...], "event_resize": "keep_events",
                "frame_pairing": "number", "frame_count_policy": "error", "shard_bytes": 1073741824,
                "source": {"root": "/abs/dataset", "label_files": {"train": {"path": ..., "sha256": ...}}}},
     "splits": {"train": ["<class_dir>/<sample>", ...], ...},   label-file order
     "clips": [{"sample": "<class_dir>/<sample>", "label": 0, "frames": N, "shard": 0,
                "offsets": {"rgb": 0, "event": N*S*S*3}, "crc32": ...}, ...],
     "complete": true}

The frames are a clip's paired frames (ClipDataset.frame_folders): under ``frame_pairing``
accumulate an event frame is stored combined. An index written before ``frame_pairing`` was
recorded reads as "position", the pairing it was written with (format.LATER_FIELDS).

Modality m of a clip is the bytes ``[offsets[m], offsets[m] + N*S*S*3)`` of its shard: frames
(N, S, S, 3) in C order (frame, row, column, RGB). The keys of ``offsets`` say which modalities a
clip holds; ``crc32`` covers its bytes in ``offsets`` order (checked by ``verify``). A sample
listed in several splits is stored once.

Writing is resumable: bytes are flushed and fsynced before the index that lists them is committed
(tmp file + os.replace), so a killed run leaves a consistent prefix. A rerun with the same
arguments truncates shard bytes no committed clip owns, skips committed clips and appends the rest,
giving the same bytes as an uninterrupted run.
"""

from __future__ import annotations

from velora.data.packed.format import DEFAULT_SHARD_BYTES, FORMAT, INDEX_FILE, SHARD_NAME, VERSION
from velora.data.packed.reader import PackedClipDataset, collate_packed
from velora.data.packed.writer import PackStats, pack_dataset

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "FORMAT",
    "INDEX_FILE",
    "SHARD_NAME",
    "VERSION",
    "PackStats",
    "PackedClipDataset",
    "collate_packed",
    "pack_dataset",
]
