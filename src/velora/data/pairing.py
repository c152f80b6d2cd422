"""Which event frames go with each RGB frame of a clip (``data.frame_pairing``), from the frame numbers.

Frames are named by their numbers (``00000005.png``), and a number is a moment of the recording
in both folders. Datasets do not always keep every frame in both: HARDVS stores RGB frames every
5th frame (0, 5, 10, ...) and event images every frame (0, 1, 2, ...). The pairings:

- ``number``: each RGB frame with the event frame of the same number.
- ``accumulate``: each RGB frame with the event frames numbered after the previous RGB frame's
  number, up to and including its own (the first RGB frame: every event frame up to its number),
  combined into one image (:func:`accumulate_event_images`): the events of the interval the
  sparser RGB stream stands for. Event frames after the last RGB frame, spanning less than the
  last RGB step, belong to an RGB frame the recording never reached: they are left out
  (``FramePairs.after_last``, counted by ``velora check-data``), not a problem.
- ``position``: the k-th RGB frame with the k-th event frame, for k < min(n_rgb, n_event), whatever
  their numbers (exports that number the two folders differently).

A frame the pairing gives no partner is ``FramePairs.lone_rgb`` / ``lone_event``; the dataset
raises or warns about it (``data.frame_count_policy``). Inputs are the frame numbers of each
folder in increasing order (as ``velora.data.clips.scan_frames`` lists them); outputs are
positions in those lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from velora.data.names import FRAME_PAIRINGS

WHITE = 255  # the background of PokerEvent / HARDVS event images, in every channel


class FramePairs(NamedTuple):
    """The frames of one clip as a pairing pairs them.

    rgb: positions in the RGB folder of the paired RGB frames, in order.
    event: for each paired RGB frame, the positions of the event frames that make its event frame
        (one, or several to combine under accumulate).
    lone_rgb, lone_event: numbers of the frames without a partner.
    after_last: accumulate only: numbers of the event frames after the last RGB frame, within one
        RGB step of it, left out as the end of the recording.
    """

    rgb: tuple[int, ...]
    event: tuple[tuple[int, ...], ...]
    lone_rgb: tuple[int, ...] = ()
    lone_event: tuple[int, ...] = ()
    after_last: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Every frame has a partner (frames after the last RGB frame aside)."""
        return not (self.lone_rgb or self.lone_event)


def pair_frames(rgb: Sequence[int], event: Sequence[int], pairing: str) -> FramePairs:
    """Pair a clip's RGB and event frames by ``pairing`` (see the module docstring).

    rgb, event: each folder's frame numbers, strictly increasing.
    """
    assert pairing in FRAME_PAIRINGS, pairing
    if pairing == "position":
        n = min(len(rgb), len(event))
        return FramePairs(tuple(range(n)), tuple((k,) for k in range(n)), tuple(rgb[n:]), tuple(event[n:]))
    if pairing == "number":
        event_position = {number: k for k, number in enumerate(event)}
        rgb_numbers = set(rgb)
        paired = tuple(k for k, number in enumerate(rgb) if number in event_position)
        return FramePairs(
            paired,
            tuple((event_position[rgb[k]],) for k in paired),
            tuple(number for number in rgb if number not in event_position),
            tuple(number for number in event if number not in rgb_numbers),
        )
    rgb_paired, groups, lone_rgb = [], [], []
    next_event = 0
    for k, number in enumerate(rgb):
        start = next_event
        while next_event < len(event) and event[next_event] <= number:
            next_event += 1
        if next_event > start:
            rgb_paired.append(k)
            groups.append(tuple(range(start, next_event)))
        else:
            lone_rgb.append(number)
    rest = tuple(event[next_event:])
    last_step = rgb[-1] - rgb[-2] if len(rgb) > 1 else 0
    if rest and rest[-1] - rgb[-1] < last_step:
        return FramePairs(tuple(rgb_paired), tuple(groups), tuple(lone_rgb), (), rest)
    return FramePairs(tuple(rgb_paired), tuple(groups), tuple(lone_rgb), rest)


def accumulate_event_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Combine event images of consecutive frames, in frame order, into one: uint8 (H, W, 3).

    images: uint8 (H, W, 3) each, red ON / blue OFF on white as PokerEvent and HARDVS store them.
    Every pixel that is not white in some image is not white in the result: it takes its value
    from the latest image in which it is not white (the polarity of its latest events, as
    ``velora.events.render.event_image`` breaks ties by the latest event). Pixels white in every
    image stay white.
    """
    combined = images[0].copy()
    for image in images[1:]:
        has_events = (image != WHITE).any(axis=-1)  # (H, W)
        combined[has_events] = image[has_events]
    return combined


def number_step(numbers: Sequence[int]) -> int | None:
    """The step of evenly spaced frame numbers (1: every frame; 0: a single frame); None when uneven."""
    if len(numbers) < 2:
        return 0
    step = numbers[1] - numbers[0]
    return step if all(b - a == step for a, b in zip(numbers, numbers[1:])) else None


def every(step: int) -> str:
    """'every frame', 'every 5th frame', 'one frame' (step 0)."""
    if step == 0:
        return "one frame"
    if step == 1:
        return "every frame"
    suffix = "th" if 10 <= step % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(step % 10, "th")
    return f"every {step}{suffix} frame"


def describe_numbers(numbers: Sequence[int]) -> str:
    """A folder's frame numbers in words: 'every 5th frame (0, 5, 10, ..., 95; 20 frames)'."""
    step = number_step(numbers)
    if step == 1:
        shown = f"{numbers[0]} to {numbers[-1]}"
    elif len(numbers) <= 4:
        shown = ", ".join(map(str, numbers))
    else:
        shown = ", ".join(map(str, numbers[:3])) + f", ..., {numbers[-1]}"
    count = f"{len(numbers)} frame{'s' * (len(numbers) != 1)}"
    return f"{every(step) if step is not None else 'irregular numbers'} ({shown}; {count})"


def number_relation(rgb: Sequence[int], event: Sequence[int]) -> str:
    """How the numbers of a clip's two folders relate, in a few words that many clips share:
    'same numbers', 'RGB every 5th frame, events every frame', 'both every frame, other numbers',
    'irregular numbers'."""
    if list(rgb) == list(event):
        return "same numbers"
    rgb_step, event_step = number_step(rgb), number_step(event)
    if rgb_step is None or event_step is None:
        return "irregular numbers"
    if rgb_step == event_step:
        return f"both {every(rgb_step)}, other numbers"
    return f"RGB {every(rgb_step)}, events {every(event_step)}"


def _listed(numbers: Sequence[int], limit: int = 5) -> str:
    return ", ".join(map(str, numbers[:limit])) + (", ..." if len(numbers) > limit else "")


def pairing_problem(rgb: Sequence[int], event: Sequence[int], pairs: FramePairs, pairing: str) -> str:
    """What the folders hold and which frames ``pairing`` leaves without a partner, e.g. 'RGB every
    5th frame (0, 5, 10; 3 frames), events every frame (0 to 14; 15 frames); paired by number
    (data.frame_pairing), 12 event frames have no partner (1, 2, 3, 4, 6, ...)'."""
    found = [
        f"{len(numbers)} {what} frame{'s have' if len(numbers) != 1 else ' has'} no partner ({_listed(numbers)})"
        for what, numbers in (("RGB", pairs.lone_rgb), ("event", pairs.lone_event))
        if numbers
    ]
    differ = next((k for k in pairs.rgb if rgb[k] != event[k]), None) if pairing == "position" else None
    if differ is not None:
        found.append(f"the paired frames' numbers differ (RGB {rgb[differ]} with event {event[differ]})")
    return (
        f"RGB {describe_numbers(rgb)}, events {describe_numbers(event)}; paired by {pairing} "
        f"(data.frame_pairing), {' and '.join(found) or 'every frame has a partner'}"
    )


def pairing_advice(rgb: Sequence[int], event: Sequence[int], pairing: str) -> str:
    """The settings that fit a clip whose frames ``pairing`` leaves without a partner, as a clause
    ('set data.frame_pairing=accumulate ... or data.frame_count_policy=min ...')."""
    fits = []
    if pairing != "accumulate" and len(rgb) < len(event) and pair_frames(rgb, event, "accumulate").complete:
        fits.append(
            "data.frame_pairing=accumulate to give each RGB frame the event frames since the previous RGB frame"
        )
    if pairing != "position" and len(rgb) == len(event):
        fits.append("data.frame_pairing=position if the k-th frames of the two folders belong together")
    pairs = pair_frames(rgb, event, pairing)
    misaligned = pairing == "position" and any(rgb[k] != event[k] for k in pairs.rgb)
    if misaligned and pair_frames(rgb, event, "number").rgb:
        fits.append("data.frame_pairing=number with data.frame_count_policy=min to pair only equal numbers")
    if not misaligned and pairs.rgb:
        fits.append(f"data.frame_count_policy=min to use the {len(pairs.rgb)} paired frames and leave the others out")
    if not fits:
        return "check the export: no setting pairs these frames"
    return "set " + ", or ".join(fits)
