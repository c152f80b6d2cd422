"""``data.layout: frames``: PokerEvent / HARDVS PNG frame folders with label files (velora.data.clips)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from velora.data.layouts.base import Layout, ReadOptions, frame_or_recording_clip


class FramesLayout(Layout):
    name = "frames"
    description = "PNG frame folders <class>/<sample>/<sample>_aps|_dvs/*.png with label files (PokerEvent, HARDVS, velora convert output)"
    modalities = ("rgb", "event")
    reads_clip_frames = True
    packable = True
    label_line_fields = 3  # <class_dir>/<sample> <num_frames> <label_index>

    def dataset(self, cfg, split, sampling, *, classes, num_classes, lenient):
        options = ReadOptions.of(cfg, classes=classes, num_classes=num_classes, lenient=lenient)
        return self.from_label_file(Path(cfg.data.root), self.label_file(cfg, split), sampling, options)

    def from_label_file(self, root, labels, sampling, options):
        from velora.data.clips import ClipDataset

        o = options
        return ClipDataset(
            root,
            labels,
            sampling,
            modalities=o.modalities,
            event_resize=o.event_resize,
            frame_pairing=o.frame_pairing,
            frame_count_policy=o.frame_count_policy,
            num_classes=o.num_classes,
            lenient=o.lenient,
        )

    clip = staticmethod(frame_or_recording_clip)

    def sensor_size(self, root: Path) -> tuple[tuple[int, int], str] | None:
        for folder in sorted(root.glob("*/*/*_aps")):  # the first readable APS frame
            for path in sorted(folder.iterdir()):
                try:
                    with Image.open(path) as image:
                        return image.size, str(path)
                except (OSError, ValueError):
                    continue
        return None


FRAMES = FramesLayout()
