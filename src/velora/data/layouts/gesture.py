"""``data.layout: gesture``: DVS128 Gesture as it ships, each labelled interval a sample (velora.data.gesture)."""

from __future__ import annotations

from velora.data.layouts.base import Layout
from velora.data.layouts.events import EventsLayout


class GestureLayout(EventsLayout):
    name = "gesture"
    label_line_fields = None  # trial lists: told by the config, not from a line
    description = (
        "DVS128 Gesture (AEDAT 3.1 trials, each labelled interval one sample; label files: the trial lists "
        "trials_to_train.txt, trials_to_test.txt; needs data.modalities: [event])"
    )

    def dataset(self, cfg, split, sampling, *, classes, num_classes, lenient):
        from velora.data.gesture import GestureDataset

        d = cfg.data
        return GestureDataset(
            d.root,
            self.label_file(cfg, split),
            sampling,
            window=d.event_window,
            window_us=d.event_window_us or None,
            representation=d.representation,
            event_resize=d.event_resize,
            classes=classes,
            num_classes=num_classes,
            lenient=lenient,
        )

    from_label_file = Layout.from_label_file  # its trial lists are not told from a label line

    def split_arguments(self) -> str:
        return "--train-labels trials_to_train.txt "


GESTURE = GestureLayout()
