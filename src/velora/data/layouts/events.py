"""``data.layout: events``: event files listed in a labels file, event-only (velora.data.event_only)."""

from __future__ import annotations

from velora.data.layouts.base import Layout, event_file_clip, event_windows
from velora.errors import DataError


class EventsLayout(Layout):
    name = "events"
    description = (
        "event files (.bs2/.bin/.npy/.npz/.h5/.aedat4/.raw/.dat/.es/.aedat/.csv) listed in a labels file, rendered "
        "into event images (event-only data such as N-MNIST, N-Caltech101; needs data.modalities: [event])"
    )
    modalities = ("event",)
    draws_events = True
    names_classes = True
    label_line_fields: int | None = 2  # sample<TAB>class (None in the gesture layout, a subclass)

    def dataset(self, cfg, split, sampling, *, classes, num_classes, lenient):
        from velora.data.event_only import EventFileDataset

        return EventFileDataset(
            cfg.data.root,
            self.label_file(cfg, split),
            sampling,
            **event_windows(cfg),
            classes=classes,
            num_classes=num_classes,
            lenient=lenient,
        )

    def from_label_file(self, root, labels, sampling, options):
        from velora.data.event_only import EventFileDataset

        o = options
        return EventFileDataset(
            root,
            labels,
            sampling,
            sensor_size=o.sensor_size,
            event_resize=o.event_resize,
            classes=o.classes,
            num_classes=o.num_classes,
            lenient=o.lenient,
        )

    def clip(self, path, cfg, sampling):
        if path.is_dir():
            raise DataError(
                f"'{path}' is a folder, but this model was trained on event files (data.layout {self.name}); "
                "give one event file"
            )
        return event_file_clip(path, cfg, sampling)


EVENTS = EventsLayout()
