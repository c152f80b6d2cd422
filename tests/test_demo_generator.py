"""Contracts of the demo data: the DVS simulator, the scenes and the on-disk dataset."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from velora.demo.generate import MARKER, PARTIAL_MARKER, generate_demo_dataset
from velora.demo.scenes import ISOLUMINANT_COLOURS, SHAPES, STRIPE_LUMA, SceneConfig, luma, render_clip, shape_mask
from velora.demo.simulator import DvsConfig, DvsSimulator, simulate_events

IDEAL = DvsConfig(threshold_on=0.2, threshold_off=0.2, threshold_sigma=0.0, refractory_us=0, noise_rate_hz=0.0)
SMALL_SCENE = SceneConfig(shapes=("disc", "square"))
SMALL = dict(
    clips_per_class={"train": 2, "val": 1, "test": 1},
    image_size=32,
    frames_range=(3, 5),
    scene=SMALL_SCENE,
    progress=False,
)


# ---- simulator ---------------------------------------------------------------------------


def _patch_sequence(factor: float, steps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(steps + 1, 8, 8) frames: a 4 x 4 patch ramps its intensity by `factor`, the rest is static."""
    frames = np.full((steps + 1, 8, 8), 0.5)
    frames[:, 2:6, 2:6] *= factor ** np.linspace(0, 1, steps + 1)[:, None, None]
    return frames, np.arange(steps + 1, dtype=np.int64) * 1000


@pytest.mark.parametrize("factor, polarity", [(4.0, 1), (0.25, -1)])
def test_brightening_gives_on_and_darkening_gives_off_events_in_the_patch(factor, polarity):
    events = simulate_events(*_patch_sequence(factor), config=IDEAL)
    assert len(events) > 0
    assert (events.p == polarity).all()
    assert ((events.x >= 2) & (events.x < 6) & (events.y >= 2) & (events.y < 6)).all()
    assert (np.diff(events.t) >= 0).all()


def test_static_scene_without_noise_gives_no_events():
    frames = np.random.default_rng(0).random((1, 6, 6)).repeat(20, axis=0)
    events = simulate_events(frames, np.arange(20) * 1000, config=DvsConfig(noise_rate_hz=0.0))
    assert len(events) == 0


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("sign", [1, -1])
def test_a_step_of_k_thresholds_gives_k_interpolated_events_per_pixel(k, sign):
    threshold = IDEAL.threshold_on
    log_step = sign * (k + 0.5) * threshold  # half a threshold spare keeps it clear of rounding
    frames = np.stack([np.ones((3, 4)), np.full((3, 4), np.exp(log_step))])
    config = DvsConfig(threshold_sigma=0.0, log_eps=1e-12)  # log(I + eps) = log(I) for these levels
    events = simulate_events(frames, np.array([0, 11_000]), config=config)
    assert len(events) == k * 12 and (events.p == sign).all()
    counts = np.bincount(events.y * 4 + events.x, minlength=12)
    assert (counts == k).all()
    # the j-th crossing lies at fraction j / (k + 0.5) of the linear log ramp
    expected = np.rint(11_000 * np.arange(1, k + 1) / (k + 0.5))
    assert np.array_equal(np.unique(events.t), expected)


def test_refractory_period_drops_events_but_reference_follows():
    frames = np.stack([np.ones((1, 1)), np.full((1, 1), np.exp(5.5 * 0.2)), np.full((1, 1), np.exp(5.5 * 0.2))])
    config = DvsConfig(threshold_sigma=0.0, refractory_us=500, log_eps=1e-12)
    events = DvsSimulator(1, 1, config, 0).simulate(frames, np.array([0, 1000, 2000]))
    # crossings at 1000 * j / 5.5 = 182, 364, 545, 727, 909 us; 500 us dead time keeps 182 and 727
    assert events.t.tolist() == [182, 727]
    # the dropped crossings still moved the reference: the static third frame adds nothing
    without = DvsSimulator(1, 1, DvsConfig(threshold_sigma=0.0, log_eps=1e-12), 0).simulate(
        frames, np.array([0, 1000, 2000])
    )
    assert len(without) == 5


def test_noise_rate_and_polarity_balance():
    frames = np.full((2, 32, 32), 0.3)
    events = simulate_events(frames, np.array([0, 2_000_000]), config=DvsConfig(noise_rate_hz=5.0), seed=1)
    expected = 5.0 * 32 * 32 * 2.0
    assert abs(len(events) - expected) < 0.05 * expected
    assert abs((events.p == 1).mean() - 0.5) < 0.03
    assert events.t.min() >= 0 and events.t.max() < 2_000_000


def test_simulator_is_deterministic_for_a_seed_and_mismatch_is_per_pixel():
    frames, times = _patch_sequence(6.0)
    config = DvsConfig(threshold_sigma=0.05, refractory_us=100, noise_rate_hz=2.0)
    a, b = simulate_events(frames, times, config, seed=3), simulate_events(frames, times, config, seed=3)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in "txyp")
    simulator = DvsSimulator(8, 8, config, 3)
    assert simulator.threshold_on.std() > 0.02


def test_simulator_rejects_bad_input():
    with pytest.raises(ValueError, match="increasing"):
        simulate_events(np.ones((2, 2, 2)), np.array([5, 5]))
    with pytest.raises(ValueError, match="shape"):
        DvsSimulator(2, 2).simulate(np.ones((2, 3, 3)), np.array([0, 1]))


# ---- scenes ------------------------------------------------------------------------------


def test_default_colours_are_isoluminant():
    for name, rgb in ISOLUMINANT_COLOURS.items():
        assert luma(rgb) == pytest.approx(STRIPE_LUMA, abs=1e-12), name


def test_events_do_not_depend_on_shape_and_rgb_does_not_depend_on_direction():
    disc = render_clip("disc", "left", 5, 32, SceneConfig(), seed=7)
    cross = render_clip("cross", "left", 5, 32, SceneConfig(), seed=7)
    assert np.array_equal(disc.events.t, cross.events.t) and np.array_equal(disc.event_frames, cross.event_frames)
    assert not np.array_equal(disc.aps_frames, cross.aps_frames)
    right = render_clip("disc", "right", 5, 32, SceneConfig(), seed=7)
    assert np.array_equal(disc.aps_frames, right.aps_frames)
    assert not np.array_equal(disc.event_frames, right.event_frames)


def test_shapes_are_distinct_and_inside_their_circle():
    masks = {name: shape_mask(name, 48, (23.5, 23.5), 16.0, 0.3) for name in SHAPES}
    disc_area = np.pi * 16.0**2
    for name, mask in masks.items():
        assert 0.25 * disc_area < mask.sum() <= 1.02 * disc_area, name
        assert mask.sum() == pytest.approx((mask * shape_mask("disc", 48, (23.5, 23.5), 16.6, 0.0)).sum(), rel=0.01), (
            name
        )
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                overlap = np.minimum(masks[a], masks[b]).sum() / np.maximum(masks[a], masks[b]).sum()
                assert overlap < 0.85, (a, b, overlap)


def test_the_shape_shows_in_rgb_as_its_own_colour():
    """Inside the shape mask the stripes take the shape's colour, outside the surround's."""

    def nearest(mean_rgb, names):
        def hue(rgb):
            encoded = np.asarray(rgb) ** (1 / 2.2)
            return (encoded - encoded.min()) / np.linalg.norm(encoded - encoded.min())

        chroma = mean_rgb - mean_rgb.min()
        return max(names, key=lambda name: hue(ISOLUMINANT_COLOURS[name]) @ chroma)

    scene = SceneConfig(shape_colours=("magenta", "yellow"), surround_colours=("cyan", "green"))
    for seed in range(6):
        clip = render_clip(SHAPES[seed % 4], "left", 3, 64, scene, seed=seed)
        p = clip.params
        inside = shape_mask(SHAPES[seed % 4], 64, p.shape_centre_xy, p.shape_radius_px, p.shape_angle) > 0.99
        ring = np.hypot(*(np.mgrid[0:64, 0:64][::-1] - np.array(p.centre_xy)[:, None, None]))
        outside = ~(shape_mask("disc", 64, p.shape_centre_xy, p.shape_radius_px + 2, 0.0) > 0) & (
            ring < p.radius_px - 2
        )
        frame = clip.aps_frames[1].astype(float)
        assert p.shape_colour != p.surround_colour
        colours = scene.shape_colours + scene.surround_colours
        assert nearest(frame[inside].mean(0), colours) == p.shape_colour, seed
        assert nearest(frame[outside].mean(0), colours) == p.surround_colour, seed


def test_the_shape_shows_in_the_dark_gaps_too():
    """The filter colours the whole frame: the gaps between stripes carry the shape's hue as well."""
    clip = render_clip("disc", "left", 3, 64, SceneConfig(), seed=3)
    p = clip.params
    inside = shape_mask("disc", 64, p.shape_centre_xy, p.shape_radius_px, p.shape_angle) > 0.99
    frame = clip.aps_frames[1].astype(float)
    darkest = frame.sum(-1) <= np.quantile(frame.sum(-1)[inside], 0.2)  # the gaps of the grating
    magenta, cyan = frame[inside & darkest].mean(0), frame[~inside & darkest].mean(0)
    assert magenta[0] > magenta[1] + 10 and cyan[1] > cyan[0] + 10, (magenta, cyan)


def test_scene_config_lists_every_problem():
    with pytest.raises(ValueError) as error:
        SceneConfig(
            shapes=("hexagon",), shape_colours=("purple",), directions=("sideways",), exposure_fraction=(0.5, 1.5)
        )
    message = str(error.value)
    assert "hexagon" in message and "purple" in message and "sideways" in message and "exposure_fraction" in message
    with pytest.raises(ValueError, match="share"):
        SceneConfig(shape_colours=("cyan",), surround_colours=("cyan",))


# ---- the dataset on disk -----------------------------------------------------------------


def _read_frames(root: Path, sample: str, suffix: str) -> np.ndarray:
    name = sample.split("/")[1]
    paths = sorted((root / sample / f"{name}_{suffix}").glob("*.png"))
    return np.stack([np.asarray(Image.open(path)) for path in paths])


def test_layout_and_label_lines(tmp_path):
    info = generate_demo_dataset(tmp_path / "demo", workers=1, **SMALL)
    root = info.root
    names = ["disc_left", "disc_right", "square_left", "square_right"]
    assert list(info.class_names) == names
    assert (root / "classes.txt").read_text().splitlines() == names
    assert info.counts == {"train": 8, "val": 4, "test": 4}
    seen = set()
    for split, per_class in SMALL["clips_per_class"].items():
        lines = (root / f"{split}_label.txt").read_text().splitlines()
        assert len(lines) == per_class * len(names)
        for line in lines:
            match = re.fullmatch(r"([a-z]+_[a-z]+)/(clip_\d{5}) (\d+) (\d+)", line)
            assert match, line
            class_dir, sample, frames, label = match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
            assert names[label] == class_dir and 3 <= frames <= 5 and (class_dir, sample) not in seen
            seen.add((class_dir, sample))
            for suffix in ("aps", "dvs"):
                folder = root / class_dir / sample / f"{sample}_{suffix}"
                assert sorted(p.name for p in folder.iterdir()) == [f"{i:04d}.png" for i in range(frames)]
            aps, dvs = Image.open(folder.parent / f"{sample}_aps" / "0000.png"), Image.open(folder / "0000.png")
            assert aps.mode == dvs.mode == "RGB" and aps.size == dvs.size == (32, 32)
    assert json.loads((root / MARKER).read_text())["classes"] == names
    assert not (root / PARTIAL_MARKER).exists()


def test_same_seed_same_files_whatever_the_worker_count(tmp_path):
    one = generate_demo_dataset(tmp_path / "one", workers=1, **SMALL).root
    two = generate_demo_dataset(tmp_path / "two", workers=2, **SMALL).root
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_rerun_is_skipped_and_changed_parameters_regenerate(tmp_path):
    root = tmp_path / "demo"
    generate_demo_dataset(root, workers=1, **SMALL)
    stamp = (root / "train_label.txt").stat().st_mtime_ns
    again = generate_demo_dataset(root, workers=1, **SMALL)
    assert again.reused and (root / "train_label.txt").stat().st_mtime_ns == stamp

    changed = dict(SMALL, scene=SceneConfig(shapes=("cross",), directions=("up", "down")))
    info = generate_demo_dataset(root, workers=1, **changed)
    assert not info.reused and list(info.class_names) == ["cross_up", "cross_down"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["cross_down", "cross_up"]  # old classes gone


def test_interrupted_run_is_redone_and_foreign_folders_are_refused(tmp_path):
    root = tmp_path / "demo"
    generate_demo_dataset(root, workers=1, **SMALL)
    (root / MARKER).rename(root / PARTIAL_MARKER)  # as if the run had stopped before the end
    assert not generate_demo_dataset(root, workers=1, **SMALL).reused
    assert (root / MARKER).exists() and not (root / PARTIAL_MARKER).exists()

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"")
    with pytest.raises(FileExistsError, match="holds no velora demo dataset"):
        generate_demo_dataset(foreign, **SMALL)


# ---- the design works: each modality alone misses half of the class ------------------------


def _event_direction(dvs: np.ndarray) -> int:
    """+1 (right) or -1 (left): drifting right, the sawtooth's long ramp darkens pixels
    (wide OFF, blue speckle) and its sharp edge brightens them (thin ON, red bands), so blue
    pixels outnumber red ones; drifting left, the other way round."""
    red = (dvs == [255, 0, 0]).all(-1).sum()
    blue = (dvs == [0, 0, 255]).all(-1).sum()
    return 1 if blue > red else -1


def _rgb_direction(aps: np.ndarray) -> int:
    """+1 or -1 from the shift that best aligns consecutive frames' column profiles."""
    profiles = aps.astype(float).sum(-1).mean(1)  # (T, W)
    profiles -= profiles.mean(1, keepdims=True)
    shifts = np.arange(-10, 11)
    vote = 0
    for before, after in zip(profiles[:-1], profiles[1:]):
        vote += np.sign(shifts[np.argmax([np.dot(np.roll(before, s), after) for s in shifts])])
    return 1 if vote > 0 else -1


@pytest.mark.slow
def test_direction_needs_events_not_rgb(tmp_path):
    scene = SceneConfig()
    info = generate_demo_dataset(
        tmp_path / "demo",
        clips_per_class={"test": 6},
        image_size=64,
        frames_range=(6, 8),
        seed=1,
        scene=scene,
        progress=False,
    )
    hits = {"event direction": [], "rgb direction": []}
    for line in (info.root / "test_label.txt").read_text().splitlines():
        sample = line.split()[0]
        direction = sample.split("/")[0].split("_")[1]
        truth = 1 if direction == "right" else -1
        aps, dvs = _read_frames(info.root, sample, "aps"), _read_frames(info.root, sample, "dvs")
        hits["event direction"].append(_event_direction(dvs) == truth)
        hits["rgb direction"].append(_rgb_direction(aps) == truth)
    accuracy = {name: float(np.mean(values)) for name, values in hits.items()}
    assert accuracy["event direction"] >= 0.95, accuracy
    assert 0.3 <= accuracy["rgb direction"] <= 0.7, accuracy


def _frames(root: Path, split: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """{(class_dir, sample): (RGB frames, event frames)} of a split."""
    out = {}
    for line in (root / f"{split}_label.txt").read_text().splitlines():
        sample = line.split()[0]
        out[tuple(sample.split("/"))] = (_read_frames(root, sample, "aps"), _read_frames(root, sample, "dvs"))
    return out


def test_matched_splits_cap_each_modality_exactly(tmp_path):
    """In val and test, clip k of every class is one scene: its two directions have bit-identical RGB
    frames and its shapes bit-identical event frames, so one modality alone cannot tell them apart.
    Training clips are each a scene of their own."""
    scene = SceneConfig(shapes=("disc", "cross", "bar"))
    info = generate_demo_dataset(
        tmp_path / "demo",
        clips_per_class={"train": 2, "val": 1, "test": 2},
        image_size=32,
        frames_range=(3, 4),
        scene=scene,
        progress=False,
        workers=1,
    )
    for split in ("val", "test"):
        frames = _frames(info.root, split)
        samples = sorted({sample for _, sample in frames})
        assert len(samples) == {"val": 1, "test": 2}[split]
        for sample in samples:
            for shape in scene.shapes:
                rgb_left, _ = frames[(f"{shape}_left", sample)]
                rgb_right, _ = frames[(f"{shape}_right", sample)]
                assert np.array_equal(rgb_left, rgb_right), (split, sample, shape)
            for direction in scene.directions:
                events = [frames[(f"{shape}_{direction}", sample)][1] for shape in scene.shapes]
                assert all(np.array_equal(events[0], other) for other in events[1:]), (split, sample, direction)
                rgbs = [frames[(f"{shape}_{direction}", sample)][0] for shape in scene.shapes]
                assert not np.array_equal(rgbs[0], rgbs[1])  # the shapes themselves differ
            _, left_events = frames[("disc_left", sample)]
            assert not np.array_equal(left_events, frames[("disc_right", sample)][1])  # so do the directions
    train = _frames(info.root, "train")
    rgb = [value[0] for key, value in train.items() if key[0].startswith("disc_")]
    assert not any(np.array_equal(a, b) for i, a in enumerate(rgb) for b in rgb[i + 1 :])
