"""``data.layout: recordings``: raw DAVIS recordings <root>/<split>/<class>/<recording>.aedat4 (velora.data.recordings)."""

from __future__ import annotations

from pathlib import Path

from velora.data.layouts.base import Layout, frame_or_recording_clip


class RecordingsLayout(Layout):
    name = "recordings"
    description = (
        "raw DAVIS recordings <root>/<split>/<class>/<recording>.aedat4 read directly (APS frames + event images)"
    )
    modalities = ("rgb", "event")
    draws_events = True
    reads_clip_frames = True
    label_files = False  # each split is the folder <root>/<split>
    names_classes = True

    def dataset(self, cfg, split, sampling, *, classes, num_classes, lenient):
        from velora.data.recordings import RecordingDataset

        d = cfg.data
        return RecordingDataset(
            self.label_file(cfg, split),
            sampling,
            modalities=tuple(d.modalities),
            classes=classes,
            num_classes=num_classes,
            representation=d.representation,
            event_resize=d.event_resize,
        )

    clip = staticmethod(frame_or_recording_clip)

    def sensor_size(self, root: Path) -> tuple[tuple[int, int], str] | None:
        import aedat

        for path in sorted(root.glob("*/*.aedat4")):  # the first readable recording's event stream
            try:
                streams = aedat.Decoder(str(path)).id_to_stream()
            except Exception:  # unreadable: try the next one
                continue
            for stream in streams.values():
                if stream["type"] == "events":
                    return (stream["width"], stream["height"]), str(path)
        return None


RECORDINGS = RecordingsLayout()
