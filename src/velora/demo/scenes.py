"""Synthetic RGB + event clips whose class needs both modalities.

A clip shows a gray sawtooth grating (brightness ramps up across each period, then drops
sharply) drifting behind a static circular aperture on a static gray background, all seen
through a static two-colour filter: one colour inside a shape (disc, ring, cross, bar) and
another around it. The two colours pass the same luminance (they are isoluminant), so the
filter changes the hue of the scene but never its brightness. The class is shape x drift
direction (e.g. `ring_left`). The shape has a random size, rotation and position, so
recognising it is a small visual task in its own right.

Why RGB alone cannot tell the direction
- Nothing but the grating moves: aperture, shape and background are static, so no object
  position reveals the direction.
- Between consecutive RGB frames the grating moves exactly half a period. A shift of
  +P/2 and of -P/2 are the same image (the grating repeats every P), so the frame
  sequence of a left drift equals that of a right drift. The sawtooth's shape is the same
  for both directions; only its motion differs.
- A uniform random shift in [0, P) would hide the direction from the frame sequence too
  (a left shift s looks like a right shift P - s), but not from the exposure blur, whose
  length is speed x exposure. At exactly P/2 per frame both directions have the same speed,
  hence the same blur; with the phase measured from the middle of frame 0's exposure, a left
  and a right clip drawn with one seed give identical RGB frames.

Why events alone cannot tell the shape
- The filter colours are isoluminant: each has luma Y = 0.299 R + 0.587 G + 0.114 B =
  `STRIPE_LUMA` (0.299, the luma of pure red), so a gray level g seen through either
  colour has luma g x STRIPE_LUMA. The simulated event camera sees luma only. The shape is
  a change of colour, not of luma, so the event stream of a clip does not depend on the
  shape at all: one seed gives bit-identical events for every shape.

Why events do tell the direction
- The event image of a frame holds only a short window before the frame (about 1-2 px of
  motion). Where the sharp edge of the sawtooth passes, every pixel fires a burst of one
  polarity (a thin dense band); on the long ramp each pixel changes slowly and fires the
  other polarity sparsely, but over most of the period (a wide speckled region). Drifting
  towards the ramp's bright end the sharp edge brightens pixels: thin red (ON) bands in wide
  blue (OFF) speckle; the other way round, thin blue bands in wide red speckle. So the
  direction shows as which colour dominates the event image, a feature that needs no
  spatial reasoning.

Why RGB does tell the shape
- The filter colours the whole frame, bright stripes and dark gaps alike, so the shape is
  a chromatic edge everywhere along its outline, whatever the grating's phase and despite
  the long exposure blur (80-95 % of the frame interval) and the sensor noise (shot and
  read noise, 10-bit ADC, 8-bit PNG). The shape always takes the shape colour and its
  surround the surround colour (by default magenta on cyan): with the two swapped at
  random, the tiny demo backbone needed several times the data to learn the shapes.
- Optional low-light clips (`low_light_fraction`, off by default) dim the scene so that
  sensor noise hides much of the hue; they make the RGB cue, not the fusion, the hard part.

Units: intensities are linear in [0, 1]; PNG values are gamma encoded (1 / 2.2); times are
microseconds; lengths are pixels (pixel i spans [i - 0.5, i + 0.5]); angles are radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from velora.demo.simulator import DvsConfig, DvsSimulator
from velora.events.render import EventStream, event_image

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, also the simulated DVS response
STRIPE_LUMA = 0.299
_GRAY_PART = (STRIPE_LUMA - 0.114) / (0.299 + 0.587)  # R = G that lifts pure blue to STRIPE_LUMA

# linear RGB, every entry with luma STRIPE_LUMA
ISOLUMINANT_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, STRIPE_LUMA / 0.587, 0.0),
    "blue": (_GRAY_PART, _GRAY_PART, 1.0),
    "yellow": (STRIPE_LUMA / 0.886, STRIPE_LUMA / 0.886, 0.0),
    "magenta": (STRIPE_LUMA / 0.413, 0.0, STRIPE_LUMA / 0.413),
    "cyan": (0.0, STRIPE_LUMA / 0.701, STRIPE_LUMA / 0.701),
}

SHAPES = ("disc", "triangle", "square", "cross", "ring", "bar")

# image axis the stripes move along (1 = x, 0 = y) and the sign of the motion
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (1, -1), "right": (1, 1), "up": (0, -1), "down": (0, 1)}


def _demo_dvs() -> DvsConfig:
    return DvsConfig(threshold_on=0.2, threshold_off=0.2, threshold_sigma=0.03, refractory_us=500, noise_rate_hz=0.2)


@dataclass(frozen=True)
class SceneConfig:
    """How demo clips look. Ranges are (low, high) of a uniform per-clip draw.

    Attributes:
        shapes: shape classes, names from `SHAPES`.
        shape_colours: filter colours inside the shape, names from `ISOLUMINANT_COLOURS`;
            each clip draws one.
        surround_colours: filter colours around the shape (none of `shape_colours`); each
            clip draws one.
        directions: drift directions, from "left", "right", "up", "down".
        frame_interval_us: time between RGB frames (and event images), microseconds.
        exposure_fraction: RGB exposure time as a fraction of the frame interval.
        period_fraction: stripe period as a fraction of the image size.
        aperture_radius_fraction: aperture radius as a fraction of the image size.
        aperture_jitter_fraction: largest offset of the aperture centre from the image
            centre, per axis, as a fraction of the image size.
        shape_radius_fraction: radius of the shape's circumscribed circle as a fraction of
            the image size; the shape lies wholly inside the aperture, anywhere, at any angle.
        background_luma: gray level of background and gaps, linear; below STRIPE_LUMA.
        low_light_fraction: probability that a clip is dim.
        low_light_brightness: scene brightness factor of a dim clip.
        full_well_electrons: electrons an RGB pixel collects at intensity 1 (sets shot noise).
        read_noise_electrons: standard deviation of the RGB read noise, electrons.
        adc_bits: bits of the RGB sensor's linear converter.
        gamma: RGB output encoding, value = linear ** (1 / gamma).
        event_window_us: length of the event window drawn into each event image, ending
            at the frame's timestamp, microseconds.
        max_shift_per_sample_px: finest motion step of the rendering fed to the simulator
            and averaged over the exposure, pixels.
        dvs: event camera parameters.
    """

    shapes: tuple[str, ...] = ("disc", "ring", "cross", "bar")
    shape_colours: tuple[str, ...] = ("magenta",)
    surround_colours: tuple[str, ...] = ("cyan",)
    directions: tuple[str, ...] = ("left", "right")
    frame_interval_us: int = 40_000
    exposure_fraction: tuple[float, float] = (0.8, 0.95)
    period_fraction: tuple[float, float] = (0.2, 0.35)
    aperture_radius_fraction: tuple[float, float] = (0.42, 0.48)
    aperture_jitter_fraction: float = 0.04
    shape_radius_fraction: tuple[float, float] = (0.24, 0.32)
    background_luma: tuple[float, float] = (0.06, 0.16)
    low_light_fraction: float = 0.0
    low_light_brightness: tuple[float, float] = (0.04, 0.12)
    full_well_electrons: float = 10_000.0
    read_noise_electrons: float = 4.0
    adc_bits: int = 10
    gamma: float = 2.2
    event_window_us: int = 16_000
    max_shift_per_sample_px: float = 0.5
    dvs: DvsConfig = field(default_factory=_demo_dvs)

    def __post_init__(self) -> None:
        problems = []
        unknown = [c for c in self.shapes if c not in SHAPES]
        if unknown or not self.shapes:
            problems.append(f"shapes {list(unknown) or '()'} not available; choose from {list(SHAPES)}")
        for name in ("shape_colours", "surround_colours"):
            colours = getattr(self, name)
            if not colours or any(c not in ISOLUMINANT_COLOURS for c in colours):
                problems.append(f"{name} {list(colours)} must name one or more of {sorted(ISOLUMINANT_COLOURS)}")
        if set(self.shape_colours) & set(self.surround_colours):
            problems.append(
                f"shape_colours and surround_colours share {sorted(set(self.shape_colours) & set(self.surround_colours))}; the shape would be invisible"
            )
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if unknown or not self.directions:
            problems.append(f"directions {list(unknown) or '()'} not available; choose from {list(DIRECTIONS)}")
        if any(
            len(set(names)) != len(names)
            for names in (self.shapes, self.shape_colours, self.surround_colours, self.directions)
        ):
            problems.append("shapes, colours and directions must not repeat")
        if not (0 < self.background_luma[0] <= self.background_luma[1] < STRIPE_LUMA):
            problems.append(
                f"background_luma {self.background_luma} must lie in (0, {STRIPE_LUMA}) so stripes are brighter"
            )
        if not (0 < self.exposure_fraction[0] <= self.exposure_fraction[1] <= 1):
            problems.append(f"exposure_fraction {self.exposure_fraction} must lie in (0, 1]")
        if not (0 <= self.low_light_fraction <= 1):
            problems.append(f"low_light_fraction {self.low_light_fraction} must lie in [0, 1]")
        if not (0 < self.event_window_us < self.frame_interval_us):
            problems.append(f"event_window_us {self.event_window_us} must lie in (0, frame_interval_us)")
        if problems:
            raise ValueError("Invalid SceneConfig: " + "; ".join(problems) + ".")

    @property
    def class_names(self) -> list[str]:
        """Class names in label-index order: shape-major, e.g. disc_left, disc_right, triangle_left, ..."""
        return [f"{shape}_{direction}" for shape in self.shapes for direction in self.directions]


@dataclass(frozen=True)
class ClipParams:
    """The random draws of one clip (lengths in pixels, luma linear)."""

    period_px: float
    phase_px: float  # stripe offset at the middle of frame 0's exposure
    centre_xy: tuple[float, float]
    radius_px: float
    background_luma: float
    exposure_fraction: float
    low_light: bool
    brightness: float  # 1 for normal clips
    shape_centre_xy: tuple[float, float]
    shape_radius_px: float
    shape_angle: float
    shape_colour: str
    surround_colour: str


@dataclass(frozen=True, eq=False)
class DemoClip:
    """One rendered clip.

    Attributes:
        aps_frames: (T, H, W, 3) uint8 RGB frames, gamma encoded.
        event_frames: (T, H, W, 3) uint8 event images (red ON, blue OFF, white background).
        events: the whole simulated event stream of the clip.
        frame_timestamps_us: (T,) int64, end of each frame's exposure and event window.
        params: the clip's random draws.
    """

    aps_frames: np.ndarray
    event_frames: np.ndarray
    events: EventStream
    frame_timestamps_us: np.ndarray
    params: ClipParams


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of linear RGB, shape (..., 3) -> (...)."""
    return np.asarray(rgb, dtype=np.float64) @ LUMA_WEIGHTS


def sample_clip_params(config: SceneConfig, image_size: int, rng: np.random.Generator) -> ClipParams:
    """Draw one clip's random parameters; the draw order is fixed, whatever the class."""
    period = image_size * rng.uniform(*config.period_fraction)
    jitter = image_size * config.aperture_jitter_fraction * rng.uniform(-1, 1, size=2)
    centre = (image_size - 1) / 2 + jitter
    radius = image_size * rng.uniform(*config.aperture_radius_fraction)
    phase = rng.uniform(0, period)
    background, exposure = rng.uniform(*config.background_luma), rng.uniform(*config.exposure_fraction)
    low_light, brightness = bool(rng.random() < config.low_light_fraction), rng.uniform(*config.low_light_brightness)
    shape_radius = image_size * rng.uniform(*config.shape_radius_fraction)
    # uniform over the disc of centres that keep the shape inside the aperture
    offset = max(radius - shape_radius - 1.0, 0.0) * math.sqrt(rng.random())
    offset_angle = rng.uniform(0, 2 * math.pi)
    shape_colour, surround_colour = rng.integers(len(config.shape_colours)), rng.integers(len(config.surround_colours))
    return ClipParams(
        period_px=period,
        phase_px=phase,
        centre_xy=(float(centre[0]), float(centre[1])),
        radius_px=radius,
        background_luma=background,
        exposure_fraction=exposure,
        low_light=low_light,
        brightness=brightness,
        shape_centre_xy=(
            float(centre[0] + offset * math.cos(offset_angle)),
            float(centre[1] + offset * math.sin(offset_angle)),
        ),
        shape_radius_px=shape_radius,
        shape_angle=rng.uniform(0, 2 * math.pi),
        shape_colour=config.shape_colours[shape_colour],
        surround_colour=config.surround_colours[surround_colour],
    )


def sawtooth_coverage(position_px: np.ndarray, offset_px: np.ndarray, period_px: float) -> np.ndarray:
    """Mean over each pixel of the sawtooth frac((x - offset) / P): 0 -> 1 across a period, then a drop.

    Box-filtered (exact area, from the antiderivative) so that sub-pixel motion changes
    intensity smoothly.

    Args:
        position_px: (W,) pixel centres along the motion axis.
        offset_px: (S,) grating offset at each time sample.
    Returns:
        (S, W) mean sawtooth value in [0, 1].
    """

    def integral_up_to(z: np.ndarray) -> np.ndarray:  # integral of frac(u / P) du from offset to z
        u = (z - offset_px[:, None]) / period_px
        return period_px * (np.floor(u) * 0.5 + 0.5 * (u - np.floor(u)) ** 2)

    return integral_up_to(position_px + 0.5) - integral_up_to(position_px - 0.5)


def aperture_mask(image_size: int, centre_xy: tuple[float, float], radius_px: float) -> np.ndarray:
    """(H, W) coverage of a disc with an anti-aliased one-pixel edge."""
    coords = np.arange(image_size)
    distance = np.hypot(coords[None, :] - centre_xy[0], coords[:, None] - centre_xy[1])
    return np.clip(radius_px - distance + 0.5, 0.0, 1.0)


def shape_mask(
    shape: str, image_size: int, centre_xy: tuple[float, float], radius_px: float, angle: float, supersample: int = 4
) -> np.ndarray:
    """(H, W) coverage of a filled shape whose circumscribed circle has radius `radius_px`.

    Anti-aliased by averaging supersample x supersample points per pixel. In shape units
    (radius 1, before rotation by `angle`): disc r <= 1; ring 0.55 <= r <= 1; square
    |u|, |v| <= 0.7; triangle equilateral with circumradius 1; cross two 0.6-wide bars;
    bar one 0.5 x 2 bar.
    """
    s = supersample
    coords = (np.arange(image_size * s) + 0.5) / s - 0.5
    x, y = coords[None, :] - centre_xy[0], coords[:, None] - centre_xy[1]
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (cos * x + sin * y) / radius_px, (-sin * x + cos * y) / radius_px
    if shape == "disc":
        inside = u**2 + v**2 <= 1
    elif shape == "ring":
        inside = (u**2 + v**2 <= 1) & (u**2 + v**2 >= 0.55**2)
    elif shape == "square":
        inside = np.maximum(abs(u), abs(v)) <= 0.7
    elif shape == "triangle":
        normals = [math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        inside = np.all([u * math.cos(t) + v * math.sin(t) <= 0.5 for t in normals], axis=0)
    elif shape == "cross":
        inside = ((abs(u) <= 0.3) & (abs(v) <= 0.95)) | ((abs(v) <= 0.3) & (abs(u) <= 0.95))
    elif shape == "bar":
        inside = (abs(u) <= 0.25) & (abs(v) <= 1.0)
    else:
        raise ValueError(f"Unknown shape {shape!r}; shapes: {list(SHAPES)}.")
    return inside.reshape(image_size, s, image_size, s).mean(axis=(1, 3))


def grating_coverage(
    times_us: np.ndarray, params: ClipParams, direction: str, image_size: int, frame_interval_us: int, t_ref_us: float
) -> np.ndarray:
    """(S, H, W) stripe coverage at the given times: the grating moves half a period per frame interval."""
    axis, sign = DIRECTIONS[direction]
    speed = params.period_px / (2 * frame_interval_us)  # px per microsecond
    offsets = params.phase_px + sign * speed * (np.asarray(times_us, dtype=np.float64) - t_ref_us)
    profile = sawtooth_coverage(np.arange(image_size, dtype=np.float64), offsets, params.period_px)  # (S, L)
    profile = profile[:, None, :] if axis == 1 else profile[:, :, None]
    return profile * aperture_mask(image_size, params.centre_xy, params.radius_px)[None]


def expose(rgb_linear: np.ndarray, config: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    """RGB sensor: shot and read noise in electrons, linear ADC, gamma, 8 bits.

    Shot noise uses the Gaussian approximation of the Poisson count (variance = mean), which
    is close already at a few electrons and several times faster to draw.

    (..., 3) linear intensity (scene brightness already applied) -> (..., 3) uint8.
    """
    mean_electrons = np.clip(rgb_linear, 0, None) * config.full_well_electrons
    noise_sigma = np.sqrt(mean_electrons + config.read_noise_electrons**2)
    electrons = mean_electrons + noise_sigma * rng.standard_normal(rgb_linear.shape)
    levels = 2**config.adc_bits - 1
    linear = np.round(np.clip(electrons / config.full_well_electrons, 0.0, 1.0) * levels) / levels
    return np.round(255 * linear ** (1 / config.gamma)).astype(np.uint8)


def render_clip(
    shape: str,
    direction: str,
    num_frames: int,
    image_size: int,
    config: SceneConfig,
    seed: int | np.random.SeedSequence,
) -> DemoClip:
    """Render one clip: RGB frames, event stream and event images.

    Frame i (i = 0..T-1) ends at t_i = (i + 1) * frame_interval_us; the first interval
    warms the event camera up. Its RGB exposure is [t_i - e, t_i] and its event image
    holds the events in [t_i - event_window_us, t_i).

    The seed is split into independent streams for clip parameters, the event camera and
    the RGB sensor, so the events depend only on luma, never on the shape or its colours.
    """
    if shape not in SHAPES or direction not in DIRECTIONS:
        raise ValueError(
            f"Unknown class ({shape!r}, {direction!r}); shapes: {list(SHAPES)}, directions: {list(DIRECTIONS)}."
        )
    seed_sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    params_seed, dvs_seed, sensor_seed = seed_sequence.spawn(3)
    params = sample_clip_params(config, image_size, np.random.default_rng(params_seed))
    interval = config.frame_interval_us
    exposure_us = params.exposure_fraction * interval
    frame_times = (np.arange(num_frames, dtype=np.int64) + 1) * interval  # (T,)
    t_ref = frame_times[0] - exposure_us / 2
    brightness = params.brightness if params.low_light else 1.0
    shift_per_interval = params.period_px / 2

    # RGB: midpoint rule over the exposure, symmetric about its middle
    n_exposure = max(1, math.ceil(shift_per_interval * params.exposure_fraction / config.max_shift_per_sample_px))
    exposure_offsets = ((np.arange(n_exposure) + 0.5) / n_exposure - 1.0) * exposure_us  # (E,) before t_i
    exposure_times = (frame_times[:, None] + exposure_offsets[None, :]).ravel()  # (T*E,)
    coverage = grating_coverage(exposure_times, params, direction, image_size, interval, t_ref)
    coverage = coverage.reshape(num_frames, n_exposure, image_size, image_size).mean(axis=1)  # (T, H, W)
    inside = shape_mask(shape, image_size, params.shape_centre_xy, params.shape_radius_px, params.shape_angle)[
        ..., None
    ]
    surround_rgb = np.asarray(ISOLUMINANT_COLOURS[params.surround_colour])
    filter_rgb = surround_rgb + inside * (
        np.asarray(ISOLUMINANT_COLOURS[params.shape_colour]) - surround_rgb
    )  # (H, W, 3)
    # the gray scene behind the filter, relative to the stripes: background / STRIPE_LUMA in the gaps, 1 on a stripe
    gray = params.background_luma / STRIPE_LUMA + coverage * (1 - params.background_luma / STRIPE_LUMA)  # (T, H, W)
    rgb_linear = gray[..., None] * filter_rgb  # (T, H, W, 3); luma = gray * STRIPE_LUMA, as the events see it
    aps_frames = expose(brightness * rgb_linear, config, np.random.default_rng(sensor_seed))

    # events: the simulator sees the instantaneous luma, sampled finely from t = 0
    n_per_interval = max(1, math.ceil(shift_per_interval / config.max_shift_per_sample_px))
    sample_times = np.rint(np.arange(num_frames * n_per_interval + 1) * (interval / n_per_interval)).astype(np.int64)
    coverage = grating_coverage(sample_times, params, direction, image_size, interval, t_ref)  # (S, H, W)
    luma_frames = brightness * (params.background_luma + coverage * (STRIPE_LUMA - params.background_luma))
    simulator = DvsSimulator(image_size, image_size, config.dvs, np.random.default_rng(dvs_seed))
    events = simulator.simulate(luma_frames, sample_times)

    event_frames = np.empty((num_frames, image_size, image_size, 3), dtype=np.uint8)
    for i, t_end in enumerate(frame_times):
        window = events.window(int(t_end) - config.event_window_us, int(t_end))
        event_frames[i] = event_image(window.x, window.y, window.p, image_size, image_size)
    return DemoClip(aps_frames, event_frames, events, frame_times, params)
