"""What training does with a bad clip (an unreadable PNG, frames of different sizes, a missing folder).

The policy
- Default, stop: a bad clip is an error, not noise to train through. Before the first step the run
  checks the dataset (``velora.data.check.check_dataset``, fast mode: folders, frame names and
  counts, PNG headers and sizes) and stops with the full report when anything is wrong. A problem
  only a full decode finds (a truncated PNG) stops the run when the clip is first read, with the
  DataError that names the file. Run ``velora check-data ROOT`` (which decodes every image) before
  a long run to find those too.
- Option, skip: the datasets are wrapped in :class:`SkipBadClips`. A clip whose read raises
  DataError is recorded and replaced; the run goes on, and at its end it reports how many clips
  were skipped and which files, from :func:`read_skip_report`.
- Either way, label-file errors (a malformed line, a label out of range, a missing label file)
  stop the run: they are raised when the dataset is built, and they mean a wrong file or a wrong
  ``num_classes``, not one bad clip.

How a skip works
- Training (``replace=True``): the bad clip is replaced by the next good one (index + 1, + 2, ...,
  wrapping around), so every batch keeps its size and shapes, the default collate and the model
  are unchanged, and which clip replaces which does not depend on the worker count. The
  replacement is seen twice in that epoch; with a few bad clips in thousands that bias is nil.
- Evaluation (``replace=False``): the item is ``None`` and :func:`collate_skipping` drops it, so
  no clip is counted twice; metrics then cover the good clips only (a batch whose clips are all
  bad collates to ``None``, which the loop must skip).
- Records survive DataLoader worker processes (whose memory is lost when they exit): each process
  appends lines ``<index><TAB><sample><TAB><epoch><TAB><error message>`` to its own file
  ``<log_dir>/skipped-<name>-<pid>.tsv``, so no two processes write one file. A clip bad in every
  epoch is recorded every epoch; :func:`read_skip_report` merges the files and counts each clip
  once. :func:`clear_skip_log` empties the folder at the start of a fresh run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset, default_collate

from velora.data.sampling import SampledClips
from velora.errors import DataError

LOG_PREFIX = "skipped"


class SkipBadClips(Dataset):
    """Wrap a dataset so a clip raising DataError is recorded in ``log_dir`` and skipped.

    dataset: a ClipDataset, EventFileDataset or any dataset raising DataError for a bad item.
    log_dir: folder for the skip records (created when needed).
    name: tells this dataset's records from others in the same folder ("train", "val").
    replace: True: return the next good item instead (training); False: return None, for
        :func:`collate_skipping` to drop (evaluation).
    max_consecutive: with ``replace``, give up after this many bad items in a row and raise a
        DataError: so many bad neighbours mean a broken dataset, not a few bad clips.

    Other attributes (``set_epoch``, ``class_names``, ``entries``, ...) are the wrapped dataset's.
    Only DataError is caught: any other exception is a bug and propagates.
    """

    def __init__(
        self,
        dataset: SampledClips,
        log_dir: str | Path,
        *,
        name: str = "train",
        replace: bool = True,
        max_consecutive: int = 16,
    ) -> None:
        if not name or any(c in name for c in "/\\-\t\n"):
            raise ValueError(f"name {name!r} must be non-empty without '/', '\\', '-' or whitespace")
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.dataset = dataset
        self.log_dir = Path(log_dir)
        self.name = name
        self.replace = replace
        self.max_consecutive = max_consecutive

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, attribute: str):
        # Called only for attributes the wrapper lacks. "dataset" is refused so unpickling in a
        # worker (before __dict__ is filled) cannot recurse.
        if attribute.startswith("__") or attribute == "dataset":
            raise AttributeError(attribute)
        return getattr(self.dataset, attribute)

    def __getitem__(self, index: int):
        index = range(len(self))[index]
        for step in range(min(self.max_consecutive, len(self))):
            candidate = (index + step) % len(self)
            try:
                return self.dataset[candidate]
            except DataError as error:
                self._record(candidate, error)
                if not self.replace:
                    return None
        raise DataError(
            f"clips {index} to {index + self.max_consecutive - 1} (wrapping around) of "
            f"{self.name} are all bad (see {self.log_dir}); so many in a row means a broken dataset "
            "or path: run velora check-data on the dataset root"
        )

    def _record(self, index: int, error: DataError) -> None:
        entries = getattr(self.dataset, "entries", None)
        sample = entries[index].sample if entries is not None else ""
        epoch = getattr(self.dataset, "epoch", "")
        fields = [str(index), sample, str(epoch), str(error)]
        line = "\t".join(" ".join(f.split()) for f in fields) + "\n"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{LOG_PREFIX}-{self.name}-{os.getpid()}.tsv").open("a", encoding="utf-8") as log:
            log.write(line)


def collate_skipping(batch: list):
    """torch's default collate over the items that are not None; None when every item was."""
    items = [item for item in batch if item is not None]
    return default_collate(items) if items else None


@dataclass
class SkippedClip:
    """One clip that was skipped: its index and sample, the error, and how often it was hit."""

    name: str
    index: int
    sample: str
    message: str
    times: int = 1


@dataclass
class SkipReport:
    """The merged skip records of a folder; ``count`` distinct clips, ``skips`` reads in all."""

    clips: list[SkippedClip]
    skips: int

    @property
    def count(self) -> int:
        return len(self.clips)

    def format(self, max_clips: int = 50) -> str:
        """A human-readable summary: the count, then one line per clip with the error."""
        if not self.clips:
            return "no clips were skipped"
        lines = [f"{self.count} bad clip(s) skipped ({self.skips} reads in all):"]
        for clip in self.clips[:max_clips]:
            where = f"{clip.name}[{clip.index}] {clip.sample}".rstrip()
            lines.append(f"  {where} (x{clip.times}): {clip.message}")
        if self.count > max_clips:
            lines.append(f"  ... and {self.count - max_clips} more")
        return "\n".join(lines)


def read_skip_report(log_dir: str | Path, name: str | None = None) -> SkipReport:
    """Merge the skip records in ``log_dir`` (of dataset ``name``, or all), one entry per clip."""
    pattern = f"{LOG_PREFIX}-{name or '*'}-*.tsv"
    clips: dict[tuple[str, int], SkippedClip] = {}
    skips = 0
    for path in sorted(Path(log_dir).glob(pattern)):
        dataset_name = path.name.split("-")[1]
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) != 4 or not fields[0].isdigit():
                continue  # a line cut short by a worker killed mid-write
            index, sample, _epoch, message = fields
            skips += 1
            key = (dataset_name, int(index))
            if key in clips:
                clips[key].times += 1
            else:
                clips[key] = SkippedClip(dataset_name, int(index), sample, message)
    return SkipReport(sorted(clips.values(), key=lambda c: (c.name, c.index)), skips)


def clear_skip_log(log_dir: str | Path, name: str | None = None) -> None:
    """Delete the skip records in ``log_dir`` (of dataset ``name``, or all): call at a run's start."""
    for path in Path(log_dir).glob(f"{LOG_PREFIX}-{name or '*'}-*.tsv"):
        path.unlink()
