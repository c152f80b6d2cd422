"""Event images resized to the model's size keep every event (velora.events.resize, data.event_resize)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import REAL_DATA
from velora.config import ConfigError, DataConfig, stored_config
from velora.events.readers import read_aedat4
from velora.events.render import OFF_COLOUR, ON_COLOUR, event_image
from velora.events.resize import EVENT_RESIZE, draw_events, resize_event_image, target_pixels

DAVIS = REAL_DATA / "davis346" / "street_davis346.aedat4"
FULL = (0.0, 0.0, 346.0, 260.0)


@pytest.fixture(scope="module")
def street_images() -> list[np.ndarray]:
    """Event images of the real DAVIS346 recording, one per 40 ms window (each has ~650 event pixels)."""
    events = read_aedat4(DAVIS).events
    images = []
    for start in range(int(events.t[0]), int(events.t[-1]) - 40_000, 20_000):
        w = events.window(start, start + 40_000)
        images.append(event_image(w.x, w.y, w.p, events.height, events.width))
    return images


def kept_share(image: np.ndarray, out: np.ndarray, box=FULL) -> float:
    """Share of the image's event pixels whose output pixel shows an event."""
    ys, xs = np.nonzero((image != 255).any(-1))
    oy, ox, inside = target_pixels(ys, xs, out.shape[0], box)
    return float((out[oy[inside], ox[inside]] != 255).any(-1).mean())


def test_config_choices_are_the_methods_that_exist():
    field = next(f for f in dataclasses.fields(DataConfig) if f.name == "event_resize")
    assert field.metadata["choices"] == EVENT_RESIZE
    assert field.default == "keep_events"


def test_keep_events_keeps_every_event_pixel_of_a_real_davis346_window_in_pure_colours(street_images):
    for image in street_images:
        out = resize_event_image(image, 224, None, "keep_events")
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        assert kept_share(image, out) == 1.0
        colours = {tuple(c) for c in out.reshape(-1, 3)}
        assert colours <= {(255, 255, 255), ON_COLOUR, OFF_COLOUR}


def test_nearest_loses_isolated_event_pixels_that_keep_events_keeps(street_images):
    # The defect keep_events exists for: on real data, nearest drops a tenth or more of the event pixels.
    shares = [kept_share(image, resize_event_image(image, 224, None, "nearest")) for image in street_images]
    assert max(shares) < 0.95


def test_each_isolated_event_pixel_lands_in_its_own_output_pixel_in_its_own_colour():
    image = np.full((260, 346, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 260, 300), rng.integers(0, 346, 300)
    on = rng.random(300) < 0.5
    image[ys, xs] = np.where(on[:, None], ON_COLOUR, OFF_COLOUR)
    ys, xs = np.nonzero((image != 255).any(-1))
    out = resize_event_image(image, 100, None, "keep_events")
    oy, ox, _ = target_pixels(ys, xs, 100, FULL)
    alone = np.unique(oy * 100 + ox, return_counts=True)
    single = set(alone[0][alone[1] == 1].tolist())
    for y, x, ty, tx in zip(ys, xs, oy, ox):
        if ty * 100 + tx in single:
            assert (out[ty, tx] == image[y, x]).all()
    # Output pixels no event falls in stay white.
    hit = np.zeros((100, 100), bool)
    hit[oy, ox] = True
    assert (out[~hit] == 255).all()


def test_in_a_footprint_the_pixel_farthest_from_the_background_wins_ties_to_the_last():
    image = np.full((4, 4, 3), 255, np.uint8)  # 4 x 4 -> 2 x 2: each output pixel has 4 sources
    image[0, 0] = (250, 250, 250)  # faint
    image[0, 1] = OFF_COLOUR  # strong
    image[2, 2] = ON_COLOUR
    image[3, 3] = OFF_COLOUR  # as strong as ON, later in row-major order
    out = resize_event_image(image, 2, None, "keep_events")
    assert tuple(out[0, 0]) == OFF_COLOUR
    assert tuple(out[1, 1]) == OFF_COLOUR
    assert tuple(out[0, 1]) == (255, 255, 255) and tuple(out[1, 0]) == (255, 255, 255)


def test_the_background_is_the_images_most_common_colour_so_a_count_image_is_max_pooled():
    image = np.zeros((6, 6, 3), np.uint8)  # black background: a count image
    image[0, 0] = (40, 0, 0)
    image[1, 1] = (200, 0, 0)
    out = resize_event_image(image, 2, None, "keep_events")
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert (out.reshape(-1, 3)[1:] == 0).all()


def test_a_crop_box_keeps_the_events_inside_it_and_drops_the_others(street_images):
    image = street_images[0]
    box = (40.5, 30.25, 300.0, 230.0)
    out = resize_event_image(image, 224, box, "keep_events")
    assert kept_share(image, out, box) == 1.0
    ys, xs = np.nonzero((image != 255).any(-1))
    _, _, inside = target_pixels(ys, xs, 224, box)
    assert 0 < inside.sum() < ys.size


def test_enlarging_keeps_every_pixel_and_adds_no_colour():
    image = np.full((34, 34, 3), 255, np.uint8)
    image[::5, ::7] = ON_COLOUR
    image[3, 3] = OFF_COLOUR
    out = resize_event_image(image, 64, None, "keep_events")
    assert kept_share(image, out, (0.0, 0.0, 34.0, 34.0)) == 1.0
    assert {tuple(c) for c in out.reshape(-1, 3)} == {(255, 255, 255), ON_COLOUR, OFF_COLOUR}


@pytest.mark.parametrize("method", ["nearest", "box", "bilinear"])
def test_the_pil_methods_are_pils_resize(street_images, method):
    from PIL import Image

    filters = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR}
    expected = np.asarray(Image.fromarray(street_images[1]).resize((224, 224), filters[method], box=FULL))
    assert np.array_equal(resize_event_image(street_images[1], 224, None, method), expected)


def test_drawn_events_are_the_resized_sensor_image():
    events = read_aedat4(DAVIS).events.window(0, 1 << 62)
    w = slice(0, 2000)
    t, x, y, p = events.t[w], events.x[w], events.y[w], events.p[w]
    drawn = draw_events("event_image", t, x, y, p, events.height, events.width, 224)
    assert np.array_equal(drawn, resize_event_image(event_image(x, y, p, events.height, events.width), 224))


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        resize_event_image(np.zeros((4, 4, 3), np.uint8), 2, None, "lanczos")
    from conftest import make_tiny_config

    with pytest.raises(ConfigError, match="data.event_resize"):
        make_tiny_config("data.event_resize=lanczos")


def test_a_config_saved_before_the_field_existed_means_nearest_or_box():
    from conftest import make_tiny_config

    raw = make_tiny_config().to_dict()
    del raw["data"]["event_resize"]
    assert stored_config(json.loads(json.dumps(raw)), "old").data.event_resize == "nearest"
    raw["data"].update(representation="count", layout="events", modalities=["event"])
    raw["model"]["modalities"] = ["event"]
    assert stored_config(raw, "old").data.event_resize == "box"
    raw["data"]["event_resize"] = "bilinear"
    assert stored_config(raw, "new").data.event_resize == "bilinear"


def test_the_old_adapter_files_read_their_events_as_they_were_trained(tmp_path):
    from conftest import REPO_ROOT
    from velora.model.adapter_file import read_adapters

    ckpt = read_adapters(REPO_ROOT / "tests" / "data" / "checkpoints" / "velora_default.safetensors")
    assert ckpt.config.data.event_resize == "nearest"
    assert ckpt.config.data.frame_pairing == "position"


def test_clip_dataset_reads_stored_346x260_event_images_by_the_configured_method(tmp_path, street_images):
    from PIL import Image

    from velora.data.clips import ClipDataset
    from velora.data.labels import ClipEntry
    from velora.data.sampling import ClipSampling

    clip = tmp_path / "c0" / "s0"
    for suffix in ("_aps", "_dvs"):
        (clip / f"s0{suffix}").mkdir(parents=True)
    for i, image in enumerate(street_images[:3]):
        Image.fromarray(image).save(clip / "s0_dvs" / f"{i:04d}.png")
        Image.fromarray(np.full((260, 346), 100, np.uint8)).save(clip / "s0_aps" / f"{i:04d}.png")
    entry = ClipEntry("c0/s0", 3, 0)
    items = {
        method: ClipDataset(tmp_path, [entry], ClipSampling(num_frames=3, image_size=224), event_resize=method)[0]
        for method in EVENT_RESIZE
    }
    for i, image in enumerate(street_images[:3]):
        for method, item in items.items():
            expected = np.array(resize_event_image(image, 224, FULL, method))
            assert torch.equal(item["events"][i], torch.from_numpy(expected).permute(2, 0, 1))
    assert kept_share(street_images[0], items["keep_events"]["events"][0].permute(1, 2, 0).numpy()) == 1.0


def reference_keep_events(image: np.ndarray, size: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """keep_events written out pixel by pixel: each output pixel's footprint is the source pixels whose
    centres fall in it; the one farthest from the background (the most common colour) wins, ties to the
    last in row-major order; an output pixel with no such pixel keeps PIL's nearest sample."""
    from collections import Counter

    from PIL import Image

    left, top, right, bottom = box
    out = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST, box=box))
    background = np.array(Counter(map(tuple, image.reshape(-1, 3))).most_common(1)[0][0], dtype=np.int64)
    best: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    height, width = image.shape[:2]
    for y in range(height):
        i = int(np.floor((y + 0.5 - top) * size / (bottom - top)))
        for x in range(width):
            j = int(np.floor((x + 0.5 - left) * size / (right - left)))
            colour = image[y, x].astype(np.int64)
            if not (0 <= i < size and 0 <= j < size) or (colour == background).all():
                continue
            strength = int(np.abs(colour - background).sum())
            if (i, j) not in best or strength >= best[(i, j)][0]:
                best[(i, j)] = (strength, image[y, x])
    for (i, j), (_, colour) in best.items():
        out[i, j] = colour
    return out


@pytest.mark.parametrize(
    "box", [(0.0, 0.0, 37.0, 29.0), (3.5, 2.25, 30.5, 25.0), (0.0, 0.0, 18.0, 14.0)], ids=["whole", "crop", "enlarged"]
)
def test_keep_events_equals_its_definition_written_out_pixel_by_pixel(box):
    # A coloured background, and event pixels that differ from it in one channel only, in two, or in
    # all three, many of them tied in strength, some right at the box's edges.
    rng = np.random.default_rng(1)
    background = np.array([10, 200, 30], np.uint8)
    image = np.tile(background, (29, 37, 1))
    # Three colours as far from the background (strength 5): in one footprint, the last in row-major order wins.
    ys, xs = rng.integers(0, 29, 300), rng.integers(0, 37, 300)
    shifts = rng.choice([[0, 0, 5], [0, 9, 0], [7, 0, 0], [20, 20, 20], [5, 0, 0], [0, 5, 0]], size=300)
    image[ys, xs] = (background.astype(np.int64) + shifts).astype(np.uint8)
    image[:, 30] = (10, 200, 35)  # the column whose centre is the crop box's right edge
    image[25, :] = (12, 200, 30)  # the row just below the crop box
    got = resize_event_image(image, 16, box, "keep_events")
    np.testing.assert_array_equal(got, reference_keep_events(image, 16, box))


@pytest.mark.parametrize(
    "background, colour",
    [
        ((10, 10, 30), (50, 10, 30)),  # differs in red alone, on a background whose red and green are equal
        ((10, 20, 30), (20, 20, 30)),  # red alone, taking the background's green value
        ((10, 20, 20), (10, 60, 20)),  # green alone, on a background whose green and blue are equal
        ((10, 20, 30), (10, 30, 30)),  # green alone, taking the background's blue value
        ((10, 20, 30), (10, 20, 31)),  # blue alone, by one
    ],
)
def test_a_pixel_that_differs_from_the_background_in_one_channel_is_an_event(background, colour):
    image = np.tile(np.array(background, np.uint8), (8, 8, 1))
    image[2, 2] = colour  # nearest neighbour samples pixel (3, 3) of this footprint, not (2, 2)
    out = resize_event_image(image, 4, None, "keep_events")
    assert tuple(out[1, 1]) == colour
    out[1, 1] = background
    assert (out == np.array(background)).all()


def test_a_single_event_pixel_is_kept():
    image = np.full((26, 35, 3), 255, np.uint8)
    image[13, 17] = ON_COLOUR  # one pixel, which nearest neighbour does not sample at this size
    out = resize_event_image(image, 10, None, "keep_events")
    assert (out == np.array(ON_COLOUR, np.uint8)).all(-1).sum() == 1


def test_the_background_is_the_exact_most_common_colour():
    from velora.events.resize import background_colour

    image = np.tile(np.array([10, 200, 30], np.uint8), (40, 50, 1))
    image[::3, ::4] = (200, 10, 30)
    assert background_colour(image).tolist() == [10, 200, 30]


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_drawn_events_go_through_the_box_and_the_method(street_images, method):
    from PIL import Image

    events = read_aedat4(DAVIS).events
    w = slice(0, 3000)
    t, x, y, p = events.t[w], events.x[w], events.y[w], events.p[w]
    box = (20.0, 10.0, 300.0, 240.0)
    for representation in ("event_image", "time_surface"):
        from velora.events.representations import as_rgb

        drawn = draw_events(representation, t, x, y, p, events.height, events.width, 64, box, method)
        pil = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}[method]
        expected = np.asarray(
            Image.fromarray(as_rgb(representation, t, x, y, p, events.height, events.width)).resize(
                (64, 64), pil, box=box
            )
        )
        np.testing.assert_array_equal(drawn, expected)
