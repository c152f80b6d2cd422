"""Thin callable wrappers around the event representations, in the style of tonic's transforms,
for users who feed events to their own models.

Each transform takes one window of events as an `EventStream` and returns a numpy array:
(C, H, W) float32 for the tensor representations, (H, W, 3) uint8 for the event image of
PokerEvent / HARDVS. The images velora's models take are drawn by name from
`velora.events.representations.RGB_REPRESENTATIONS` (data.representation), not from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velora.events.render import EventStream, event_image
from velora.events.representations import count_frame, time_surface, voxel_grid


@dataclass(frozen=True)
class ToEventImage:
    """The red/blue-on-white event image of PokerEvent and HARDVS, (H, W, 3) uint8."""

    num_channels = 3  # channels last, like the datasets' PNG frames

    def __call__(self, events: EventStream) -> np.ndarray:
        return event_image(events.x, events.y, events.p, events.height, events.width)


@dataclass(frozen=True)
class ToCountFrame:
    """ON and OFF event counts per pixel, (2, H, W) float32."""

    num_channels = 2

    def __call__(self, events: EventStream) -> np.ndarray:
        return count_frame(events.x, events.y, events.p, events.height, events.width)


@dataclass(frozen=True)
class ToVoxelGrid:
    """Polarity split bilinearly over num_bins time bins spanning the window, (num_bins, H, W) float32.

    Args:
        num_bins: number of time bins, >= 1.
    """

    num_bins: int

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise ValueError(f"ToVoxelGrid needs num_bins >= 1; got {self.num_bins}.")

    @property
    def num_channels(self) -> int:
        return self.num_bins

    def __call__(self, events: EventStream) -> np.ndarray:
        return voxel_grid(events.t, events.x, events.y, events.p, self.num_bins, events.height, events.width)


@dataclass(frozen=True)
class ToTimeSurface:
    """Exponential decay since the last ON / OFF event per pixel, (2, H, W) float32 in [0, 1].

    Args:
        tau_us: decay constant in microseconds, > 0.
    """

    tau_us: float

    num_channels = 2

    def __post_init__(self) -> None:
        if not self.tau_us > 0:
            raise ValueError(f"ToTimeSurface needs tau_us > 0 (microseconds); got {self.tau_us}.")

    def __call__(self, events: EventStream, t_ref_us: int | None = None) -> np.ndarray:
        """Read the surface at t_ref_us (microseconds); default the window's last event."""
        if t_ref_us is None:
            t_ref_us = int(events.t[-1]) if len(events) else 0
        return time_surface(events.t, events.x, events.y, events.p, events.height, events.width, t_ref_us, self.tau_us)
