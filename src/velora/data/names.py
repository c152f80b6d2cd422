"""Names shared by every clip dataset: the modalities, their folders, their keys in a batch.

A modality has one name, singular, everywhere a user writes it (``data.modalities: [rgb, event]``,
``--modalities event``, adapter names). Only the key of its frames in a dataset item and a batch
differs for events: ``"events"``, because that key is the model's argument,
``VELoRA(rgb=..., events=...)``, and an item holds T event *frames*. ``BATCH_KEY`` is the one
place that maps one to the other.
"""

from __future__ import annotations

MODALITIES = ("rgb", "event")
BATCH_KEY = {"rgb": "rgb", "event": "events"}
# The frame folders of a clip in the PokerEvent / HARDVS layout: <sample>/<sample>_aps, _dvs.
FOLDER_SUFFIX = {"rgb": "_aps", "event": "_dvs"}
FRAME_COUNT_POLICIES = ("error", "min")
# How a clip's RGB and event frames are paired (velora.data.pairing): by frame number, with the
# event frames since the previous RGB frame accumulated, or k-th with k-th.
FRAME_PAIRINGS = ("number", "accumulate", "position")
