"""A DVS (event camera) simulator of the ESIM / v2e kind.

Each pixel compares its log intensity log(I + eps) with a reference level and emits an
event every time the difference reaches its contrast threshold: ON when it went up by
C_on, OFF when it went down by C_off, and the reference moves by one threshold per event.
Between two input samples the log intensity is taken as linear in time, so a pixel that
moved k thresholds emits k events with timestamps interpolated along that line
(Rebecq et al., "ESIM: an Open Event Camera Simulator", CoRL 2018; Hu et al., "v2e",
CVPRW 2021).

Non-idealities, all fixed per simulator instance by its random generator:
- threshold mismatch: each pixel's C_on and C_off are drawn once from a Gaussian around the
  nominal value (standard deviation `threshold_sigma`);
- refractory period: an event within `refractory_us` of the pixel's last emitted event is
  dropped, but the reference still moves, so the pixel does not "catch up" later;
- background activity: Poisson events at `noise_rate_hz` per pixel with random polarity,
  independent of the signal (they neither move the reference nor start a refractory period).

The loop runs over input time samples and over the threshold crossings within one sample
step; every step is vectorised over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velora.events.render import EventStream

# Thresholds below this (log units) would make a pixel fire on float rounding noise.
MIN_THRESHOLD = 0.01
# Tolerance so that a change of exactly k thresholds gives k events despite float rounding.
CROSSING_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DvsConfig:
    """Parameters of the simulated event camera.

    Attributes:
        threshold_on: nominal ON contrast threshold, in log-intensity units.
        threshold_off: nominal OFF contrast threshold, in log-intensity units (positive).
        threshold_sigma: standard deviation of the per-pixel threshold mismatch, log units.
        refractory_us: dead time after an emitted event at a pixel, microseconds.
        noise_rate_hz: background-activity rate per pixel, events per second.
        log_eps: added to the intensity before the log, in the intensity's linear units,
            so black pixels have a finite log.
    """

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    threshold_sigma: float = 0.03
    refractory_us: int = 0
    noise_rate_hz: float = 0.0
    log_eps: float = 1e-3

    def __post_init__(self) -> None:
        problems = []
        if self.threshold_on < MIN_THRESHOLD or self.threshold_off < MIN_THRESHOLD:
            problems.append(
                f"threshold_on/threshold_off must be >= {MIN_THRESHOLD} (got {self.threshold_on}, {self.threshold_off})"
            )
        if self.threshold_sigma < 0:
            problems.append(f"threshold_sigma must be >= 0 (got {self.threshold_sigma})")
        if self.refractory_us < 0:
            problems.append(f"refractory_us must be >= 0 (got {self.refractory_us})")
        if self.noise_rate_hz < 0:
            problems.append(f"noise_rate_hz must be >= 0 (got {self.noise_rate_hz})")
        if self.log_eps <= 0:
            problems.append(f"log_eps must be > 0 (got {self.log_eps})")
        if problems:
            raise ValueError("Invalid DvsConfig: " + "; ".join(problems) + ".")


class DvsSimulator:
    """A stateful event camera: feed it intensity frames in time order, get events.

    State per pixel (each (H*W,), row-major): reference log level, ON/OFF thresholds
    (drawn once), time of the last emitted event. The first frame ever seen sets the reference and
    emits nothing; later calls to `simulate` continue from the last frame seen.
    """

    def __init__(
        self, height: int, width: int, config: DvsConfig = DvsConfig(), rng: np.random.Generator | int | None = None
    ):
        self.height, self.width, self.config = height, width, config
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        n_pixels = height * width  # state is kept flat, pixel index = y * width + x
        self.threshold_on = np.maximum(
            config.threshold_on + config.threshold_sigma * self.rng.standard_normal(n_pixels), MIN_THRESHOLD
        )
        self.threshold_off = np.maximum(
            config.threshold_off + config.threshold_sigma * self.rng.standard_normal(n_pixels), MIN_THRESHOLD
        )
        # change of log intensity from the reference at which a pixel fires
        self._on_trigger = self.threshold_on - CROSSING_TOLERANCE
        self._off_trigger = -self.threshold_off + CROSSING_TOLERANCE
        self.reference: np.ndarray | None = None  # (H*W,) log level, None until the first frame
        self.last_log: np.ndarray | None = None  # (H*W,) log intensity of the last sample
        self.last_t_us: int | None = None
        # far enough in the past that the first event is never refractory
        self.last_event_us = np.full(n_pixels, np.iinfo(np.int64).min // 2, dtype=np.int64)

    def simulate(self, frames: np.ndarray, timestamps_us: np.ndarray) -> EventStream:
        """Events caused by a finely sampled intensity sequence.

        Args:
            frames: (N, H, W) float, linear intensity (>= 0, any scale; eps is in its units).
            timestamps_us: (N,) int64, microseconds, strictly increasing and after any
                frame given to an earlier call.

        Returns:
            EventStream of the signal events in (first sample, last sample] plus the
            background noise in the same span, sorted by time.
        """
        frames = np.asarray(frames, dtype=np.float64)
        timestamps_us = np.asarray(timestamps_us, dtype=np.int64)
        self._check_input(frames, timestamps_us)
        log_frames = np.log(frames + self.config.log_eps)  # (N, H, W)

        start = 0
        if self.reference is None:
            self.reference = log_frames[0].ravel().copy()
            self.last_log, self.last_t_us = log_frames[0].ravel(), int(timestamps_us[0])
            start = 1
        assert self.last_t_us is not None  # the first frame ever seen set the state
        span_start_us = self.last_t_us

        chunks = []  # per crossing: (t, flat pixel, polarity)
        for log_now, t_now in zip(log_frames[start:], timestamps_us[start:]):
            chunks.extend(self._step(log_now, int(t_now)))
        chunks.append(self._noise(span_start_us, self.last_t_us))

        t = np.concatenate([c[0] for c in chunks])
        pixel = np.concatenate([c[1] for c in chunks])
        p = np.concatenate([c[2] for c in chunks])
        order = np.argsort(t, kind="stable")
        t, pixel, p = t[order], pixel[order], p[order]
        return EventStream(t, pixel % self.width, pixel // self.width, p, self.width, self.height)

    def _step(self, log_now: np.ndarray, t_now: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Advance every pixel from the last sample to (log_now, t_now); return event chunks.

        State arrays are flat (H*W,); only pixels that crossed a threshold are touched.
        """
        log_now = log_now.ravel()
        assert (
            self.reference is not None and self.last_log is not None and self.last_t_us is not None
        )  # simulate set them
        log_before, t_before = self.last_log, self.last_t_us
        change = log_now - self.reference  # (H*W,)
        # a pixel moves one way within a step, so it crosses ON or OFF thresholds, not both
        fired_on = np.flatnonzero(change >= self._on_trigger)
        fired_off = np.flatnonzero(change <= self._off_trigger)
        pixel = np.concatenate([fired_on, fired_off])  # (M,)
        step = np.concatenate([self.threshold_on[fired_on], -self.threshold_off[fired_off]])  # signed threshold
        n_events = np.floor(change[pixel] / step + CROSSING_TOLERANCE).astype(np.int64)
        # most events first, so the pixels still firing at crossing k are a prefix; pixels
        # that only entered through the tolerance (n = 0) sort to the end and never fire
        order = np.argsort(-n_events, kind="stable")
        pixel, step, n_events = pixel[order], step[order], n_events[order]
        still_firing = np.searchsorted(-n_events, -np.arange(1, n_events.max(initial=0) + 1), side="right")  # (K,)
        polarity = np.where(step > 0, 1, -1).astype(np.int8)

        reference = self.reference[pixel]
        before = log_before[pixel]
        # log intensity is linear in time within the step: crossing k of a pixel lies at
        # t_first + k * t_per_threshold. The slope is non-zero for a pixel that fired, since
        # every step leaves |log - reference| below one threshold; that also keeps the
        # crossings inside (t_before, t_now] up to float rounding.
        us_per_log = (t_now - t_before) / np.where(n_events > 0, log_now[pixel] - before, 1.0)
        t_first = t_before + (reference - before) * us_per_log
        t_per_threshold = step * us_per_log
        chunks = []
        for k, m in enumerate(still_firing, start=1):
            t_event = np.rint(t_first[:m] + k * t_per_threshold[:m]).astype(np.int64)
            fires = t_event - self.last_event_us[pixel[:m]] >= self.config.refractory_us
            where, t_event = pixel[:m][fires], t_event[fires]
            self.last_event_us[where] = t_event
            chunks.append((t_event, where, polarity[:m][fires]))

        self.reference[pixel] = reference + n_events * step  # follows even for dropped events
        self.last_log, self.last_t_us = log_now, t_now
        return chunks

    def _noise(self, t_start_us: int, t_end_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Poisson background events in [t_start_us, t_end_us): (t, flat pixel, polarity)."""
        n_pixels = self.height * self.width
        expected = self.config.noise_rate_hz * n_pixels * (t_end_us - t_start_us) * 1e-6
        count = int(self.rng.poisson(expected)) if expected > 0 else 0
        t = self.rng.integers(t_start_us, max(t_end_us, t_start_us + 1), size=count, dtype=np.int64)
        pixel = self.rng.integers(0, n_pixels, size=count, dtype=np.int64)
        p = np.where(self.rng.random(count) < 0.5, 1, -1).astype(np.int8)
        return t, pixel, p

    def _check_input(self, frames: np.ndarray, timestamps_us: np.ndarray) -> None:
        if frames.ndim != 3 or frames.shape[1:] != (self.height, self.width):
            raise ValueError(f"frames must have shape (N, {self.height}, {self.width}); got {frames.shape}.")
        if timestamps_us.shape != (frames.shape[0],):
            raise ValueError(
                f"timestamps_us must have shape ({frames.shape[0]},), one per frame; got {timestamps_us.shape}."
            )
        if np.any(np.diff(timestamps_us) <= 0) or (self.last_t_us is not None and timestamps_us[0] <= self.last_t_us):
            raise ValueError(
                "timestamps_us must be strictly increasing, also across calls to simulate; pass frames in time order."
            )
        if np.any(frames < 0) or not np.all(np.isfinite(frames)):
            raise ValueError("frames must be finite, non-negative linear intensities; clip or rescale them first.")


def simulate_events(
    frames: np.ndarray,
    timestamps_us: np.ndarray,
    config: DvsConfig = DvsConfig(),
    seed: int | np.random.Generator | None = 0,
) -> EventStream:
    """One-shot simulation: a fresh `DvsSimulator` run over (N, H, W) frames at (N,) microsecond timestamps."""
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must have shape (N, H, W); got {frames.shape}.")
    simulator = DvsSimulator(frames.shape[1], frames.shape[2], config, seed)
    return simulator.simulate(frames, timestamps_us)
