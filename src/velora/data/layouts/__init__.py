"""Every dataset layout, by the name ``data.layout`` gives it (see velora.data.layouts.base.Layout).

Adding a layout: a module with a Layout subclass and its instance, and one line here.
"""

from __future__ import annotations

from velora.data.layouts.base import Layout
from velora.data.layouts.events import EVENTS
from velora.data.layouts.frames import FRAMES
from velora.data.layouts.gesture import GESTURE
from velora.data.layouts.recordings import RECORDINGS

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (FRAMES, EVENTS, RECORDINGS, GESTURE)}

__all__ = ["LAYOUTS", "Layout"]
