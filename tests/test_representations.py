"""Contracts of the event representations, the event windows and the representation factory."""

import numpy as np
import pytest

from conftest import REAL_DATA
from velora.events.render import EventStream
from velora.events.representations import (
    count_frame,
    fixed_count_windows,
    fixed_duration_windows,
    frame_windows,
    normalize_polarity,
    time_surface,
    voxel_grid,
    window_bounds,
)
from velora.events.transforms import ToCountFrame, ToEventImage, ToTimeSurface, ToVoxelGrid

NMNIST_SAMPLE = REAL_DATA / "nmnist" / "1.bs2"
H, W = 6, 8


def random_events(n=500, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 10_000, n))
    return t, rng.integers(0, W, n), rng.integers(0, H, n), rng.random(n) < 0.5  # p as bool


def empty():
    return np.array([], np.int64), np.array([], np.int16), np.array([], np.int16), np.array([], np.int8)


# --- polarity -------------------------------------------------------------------------------------


def test_normalize_polarity_accepts_three_conventions():
    expected = np.array([1, -1, 1], np.int8)
    for p in (np.array([True, False, True]), np.array([1, 0, 1]), np.array([1, -1, 1]), np.array([1.0, 0.0, 1.0])):
        out = normalize_polarity(p)
        assert out.dtype == np.int8 and np.array_equal(out, expected)
    assert normalize_polarity(np.array([], np.uint8)).shape == (0,)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([1, 2], r"polarity must be bool, 0/1 or -1/\+1; found the values \[2\]."),
        (
            [3, 1, 2, 9, 0, 7, 5, 8, 4],
            r"polarity must be bool, 0/1 or -1/\+1; found the values \[2, 3, 4, 5, 7\].",
        ),  # the first 5
        ([0, -1, 1], r"polarity mixes 0 and -1 as OFF; use one convention: bool, 0/1 or -1/\+1."),
        ([0.5, 1.0], r"polarity must be bool, 0/1 or -1/\+1; found the values \[0.5\]."),
    ],
)
def test_normalize_polarity_refuses_other_values(bad, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        normalize_polarity(np.array(bad))


@pytest.mark.parametrize(
    "represent",
    [
        lambda t, x, y, p: count_frame(x, y, p, H, W),
        lambda t, x, y, p: voxel_grid(t, x, y, p, 5, H, W),
        lambda t, x, y, p: time_surface(t, x, y, p, H, W, t_ref_us=8_000, tau_us=2_000.0),
    ],
    ids=["count", "voxel_grid", "time_surface"],
)
def test_bool_binary_and_signed_polarity_agree(represent):
    t, x, y, is_on = random_events()
    as_bool = represent(t, x, y, is_on)
    assert np.array_equal(as_bool, represent(t, x, y, is_on.astype(np.uint8)))
    assert np.array_equal(as_bool, represent(t, x, y, np.where(is_on, 1, -1).astype(np.int8)))


# --- shapes, empty input ----------------------------------------------------------------------------


def test_shapes_and_empty_input_give_zeros():
    for events in (empty(), random_events()):
        t, x, y, p = events
        assert count_frame(x, y, p, H, W).shape == (2, H, W)
        assert voxel_grid(t, x, y, p, 4, H, W).shape == (4, H, W)
        assert time_surface(t, x, y, p, H, W, 5_000, 1_000.0).shape == (2, H, W)
    t, x, y, p = empty()
    for out in (count_frame(x, y, p, H, W), voxel_grid(t, x, y, p, 4, H, W), time_surface(t, x, y, p, H, W, 0, 1.0)):
        assert out.dtype == np.float32 and not out.any()


def test_coordinates_outside_the_sensor_are_refused():
    with pytest.raises(ValueError, match="outside"):
        count_frame(np.array([W]), np.array([0]), np.array([1]), H, W)


# --- count frame ------------------------------------------------------------------------------------


def test_count_frame_counts_per_pixel_and_polarity():
    x, y, p = np.array([1, 1, 1, 3]), np.array([2, 2, 2, 0]), np.array([1, 1, -1, -1])
    frame = count_frame(x, y, p, H, W)
    assert frame[0, 2, 1] == 2 and frame[1, 2, 1] == 1  # ON, OFF at (x=1, y=2)
    assert frame[1, 0, 3] == 1 and frame[0, 0, 3] == 0
    assert frame.sum() == 4


def test_count_frame_conserves_events():
    t, x, y, p = random_events()
    frame = count_frame(x, y, p, H, W)
    assert frame.sum() == len(t)
    assert frame[0].sum() == p.sum() and frame[1].sum() == (~p).sum()


# --- voxel grid -------------------------------------------------------------------------------------


def test_voxel_grid_conserves_polarity_sum():
    t, x, y, p = random_events()
    for num_bins in (1, 2, 5, 9):
        grid = voxel_grid(t, x, y, p, num_bins, H, W)
        assert grid.sum() == pytest.approx(np.where(p, 1, -1).sum(), abs=1e-3)
        # per pixel too: each pixel's bins add up to its net polarity
        net = count_frame(x, y, p, H, W)
        np.testing.assert_allclose(grid.sum(axis=0), net[0] - net[1], atol=1e-5)


def test_voxel_grid_bilinear_split_hand_checked():
    # span 0..400 us over 5 bins: 100 us per bin; t = 150 sits halfway between bins 1 and 2
    t = np.array([0, 150, 400])
    x, y = np.array([0, 2, 4]), np.array([0, 1, 3])
    p = np.array([1, -1, 1])
    grid = voxel_grid(t, x, y, p, 5, H, W)
    assert grid[0, 0, 0] == 1.0  # the first event on bin 0
    assert grid[1, 1, 2] == -0.5 and grid[2, 1, 2] == -0.5
    assert grid[4, 3, 4] == 1.0  # the last event on the last bin
    assert np.count_nonzero(grid) == 4


def test_voxel_grid_equal_timestamps_go_to_bin_zero_without_nan():
    t = np.full(3, 7_000)
    grid = voxel_grid(t, np.array([0, 1, 1]), np.array([0, 0, 0]), np.array([1, 1, 0]), 4, H, W)
    assert np.isfinite(grid).all()
    assert grid[0, 0, 0] == 1.0 and grid[0, 0, 1] == 0.0  # +1 - 1 at (x=1, y=0)
    assert not grid[1:].any()
    single = voxel_grid(np.array([5]), np.array([3]), np.array([2]), np.array([True]), 3, H, W)
    assert single[0, 2, 3] == 1.0 and single.sum() == 1.0


# --- time surface -----------------------------------------------------------------------------------


def test_time_surface_hand_checked():
    t = np.array([0, 1_000, 2_000, 3_000, 9_000])
    x, y = np.array([0, 0, 1, 2, 2]), np.array([0, 0, 0, 0, 0])
    p = np.array([1, 1, -1, 1, 1])
    surface = time_surface(t, x, y, p, H, W, t_ref_us=3_000, tau_us=1_000.0)
    assert surface[0, 0, 0] == pytest.approx(np.exp(-2.0))  # last ON event at (0, 0) is t = 1000
    assert surface[1, 0, 1] == pytest.approx(np.exp(-1.0))  # OFF at (1, 0), t = 2000
    assert surface[0, 0, 2] == 1.0  # the event at t = 3000; the one at 9000 is after t_ref
    assert surface[0, 0, 1] == 0.0 and surface[1, 0, 0] == 0.0  # no event of that polarity
    assert np.count_nonzero(surface) == 3
    # the last event is the latest one, whatever the order of the arrays
    order = np.array([4, 1, 3, 0, 2])
    np.testing.assert_array_equal(surface, time_surface(t[order], x[order], y[order], p[order], H, W, 3_000, 1_000.0))


def test_time_surface_ignores_everything_after_t_ref():
    t, x, y, p = random_events()
    assert not time_surface(t, x, y, p, H, W, t_ref_us=int(t[0]) - 1, tau_us=1_000.0).any()


# --- windows ----------------------------------------------------------------------------------------


def test_frame_windows_hold_the_events_since_the_previous_frame():
    t = np.array([5, 10, 10, 25, 40, 41, 90])
    windows = frame_windows(t, np.array([10, 30, 35, 50]))
    assert [t[w].tolist() for w in windows] == [[5], [10, 10, 25], [], [40, 41]]  # 90 is after the last frame
    assert frame_windows(t, np.array([], np.int64)) == []
    assert [w.stop - w.start for w in frame_windows(np.array([], np.int64), np.array([0, 10]))] == [0, 0]


def test_fixed_duration_windows():
    t = np.array([100, 120, 199, 200, 450])
    windows = fixed_duration_windows(t, 100)  # [100, 200) [200, 300) [300, 400) [400, 500)
    assert [t[w].tolist() for w in windows] == [[100, 120, 199], [200], [], [450]]
    from_zero = fixed_duration_windows(t, 250, start_us=0)  # [0, 250) [250, 500)
    assert [t[w].tolist() for w in from_zero] == [[100, 120, 199, 200], [450]]
    assert fixed_duration_windows(t, 100, start_us=1_000) == []
    assert [t[w].tolist() for w in fixed_duration_windows(t, 100, start_us=300)] == [[], [450]]
    assert [t[w].tolist() for w in fixed_duration_windows(t, 100, start_us=450)] == [[450]]  # the last event alone
    assert fixed_duration_windows(np.array([], np.int64), 100) == []
    with pytest.raises(ValueError, match="duration_us"):
        fixed_duration_windows(t, 0)


def test_fixed_count_windows_cover_every_event_once():
    assert fixed_count_windows(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert fixed_count_windows(6, 3) == [slice(0, 3), slice(3, 6)]
    assert fixed_count_windows(0, 3) == []
    with pytest.raises(ValueError, match="count"):
        fixed_count_windows(5, 0)


@pytest.mark.parametrize("t", [[3, 1, 2], [3, 1], [1, 3, 2], [1, 2, 2, 1]])
def test_windows_refuse_unsorted_timestamps(t):
    with pytest.raises(ValueError, match="sorted"):
        fixed_duration_windows(np.array(t), 10)


def test_window_errors_name_what_is_wrong():
    sort = "must be sorted by time; sort the events with np.argsort[(]t, kind='stable'[)].$"
    with pytest.raises(ValueError, match="^event timestamps t " + sort):
        frame_windows(np.array([3, 1]), np.array([10]))
    with pytest.raises(ValueError, match="^frame_timestamps_us " + sort):
        frame_windows(np.array([1, 3]), np.array([10, 5]))
    with pytest.raises(ValueError, match="^event timestamps t " + sort):
        fixed_duration_windows(np.array([3, 1]), 10)
    with pytest.raises(ValueError, match=r"^event timestamps t must be a 1-D array; got shape \(1, 2\).$"):
        frame_windows(np.array([[1, 3]]), np.array([10]))
    with pytest.raises(ValueError, match=r"^fixed_duration_windows needs duration_us > 0 \(microseconds\); got 0.$"):
        fixed_duration_windows(np.array([1]), 0)
    with pytest.raises(ValueError, match="^fixed_count_windows needs count > 0 events; got 0.$"):
        fixed_count_windows(5, 0)
    with pytest.raises(ValueError, match="^fixed_count_windows needs n_events >= 0; got -1.$"):
        fixed_count_windows(-1, 3)


def test_the_smallest_windows_are_valid():
    t = np.array([1, 2, 2, 4])
    assert [t[w].tolist() for w in fixed_duration_windows(t, 1)] == [[1], [2, 2], [], [4]]
    assert fixed_count_windows(3, 1) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert [t[w].tolist() for w in frame_windows(t, np.array([3]))] == [[1, 2, 2]]  # one frame, one window


# --- transforms and the registry ------------------------------------------------------------------


def test_transforms_on_an_event_stream():
    t, x, y, is_on = random_events()
    stream = EventStream(t, x, y, np.where(is_on, 1, -1), width=W, height=H)
    transforms = {
        "event_image": (ToEventImage(), (H, W, 3)),
        "count": (ToCountFrame(), (2, H, W)),
        "voxel_grid": (ToVoxelGrid(num_bins=3), (3, H, W)),
        "time_surface": (ToTimeSurface(tau_us=500.0), (2, H, W)),
    }
    for name, (transform, shape) in transforms.items():
        out = transform(stream)
        assert out.shape == shape
        assert out.dtype == (np.uint8 if name == "event_image" else np.float32)
        assert transform.num_channels == (shape[2] if name == "event_image" else shape[0])
        assert transform(stream.window(-10, -5)).shape == shape  # an empty window
    expected = voxel_grid(t, x, y, is_on, 3, H, W)
    np.testing.assert_array_equal(ToVoxelGrid(num_bins=3)(stream), expected)


def test_a_representation_is_one_registered_function_and_the_config_offers_it(monkeypatch):
    from conftest import make_tiny_config
    from velora.config import ConfigError
    from velora.events import representations

    assert set(representations.RGB_REPRESENTATIONS) == {"event_image", "count", "voxel_grid", "time_surface"}
    with pytest.raises(ValueError, match="not one of .*event_image"):
        representations.as_rgb("histogram", *random_events(), H, W)
    with pytest.raises(ConfigError, match="data.representation"):
        make_tiny_config("data.representation=histogram", "data.layout=events", "data.modalities=[event]")

    # Adding one: a function and its registry line; as_rgb, the datasets and the config find it by name.
    monkeypatch.setitem(representations.RGB_REPRESENTATIONS, "on_mask", None)  # removed again after the test

    @representations.rgb_representation("on_mask")
    def on_mask(t, x, y, p, height, width):
        """White where an ON event fell, black elsewhere."""
        image = np.zeros((height, width, 3), np.uint8)
        image[np.asarray(y)[np.asarray(p) > 0], np.asarray(x)[np.asarray(p) > 0]] = 255
        return image

    t, x, y, is_on = random_events()
    out = representations.as_rgb("on_mask", t, x, y, np.where(is_on, 1, -1), H, W)
    assert out.shape == (H, W, 3) and out.max() == 255
    cfg = make_tiny_config("data.representation=on_mask", "data.layout=events", "data.modalities=[event]")
    assert cfg.data.representation == "on_mask"


# --- a real recording -------------------------------------------------------------------------------


def decode_nmnist(path):
    """Reference decoder of N-MNIST's 40-bit events: x, y, p, t (microseconds) per 5 bytes."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return t, raw[:, 0], raw[:, 1], raw[:, 2] >> 7


def test_representations_of_a_real_nmnist_sample_conserve_counts():
    assert NMNIST_SAMPLE.exists(), f"{NMNIST_SAMPLE} missing: restore tests/data/real with git"
    t, x, y, p = decode_nmnist(NMNIST_SAMPLE)
    size = 34  # the ATIS crop of N-MNIST
    signed = np.where(p == 1, 1, -1)
    assert len(t) > 1000 and np.all(np.diff(t) >= 0)
    assert count_frame(x, y, p, size, size).sum() == len(t)
    grid = voxel_grid(t, x, y, p, 5, size, size)
    assert grid.sum() == pytest.approx(signed.sum(), abs=1e-2)
    assert np.isfinite(grid).all()
    windows = fixed_duration_windows(t, 50_000)
    per_window = [count_frame(x[w], y[w], p[w], size, size).sum() for w in windows]
    assert sum(per_window) == len(t)


@pytest.mark.parametrize("represent", ["voxel_grid", "time_surface"])
def test_timestamps_and_polarities_must_match_the_coordinates(represent):
    x, y = np.array([0, 1]), np.array([0, 0])
    call = {
        "voxel_grid": lambda t, p: voxel_grid(t, x, y, p, 2, 2, 2),
        "time_surface": lambda t, p: time_surface(t, x, y, p, 2, 2, 10, 5.0),
    }[represent]
    call(np.array([1, 2]), np.array([1, 0]))  # matching lengths: fine
    with pytest.raises(
        ValueError, match=r"^events need 1-D arrays of one length; got shapes \[\(2,\), \(2,\), \(3,\), \(2,\)\].$"
    ):
        call(np.array([1, 2, 3]), np.array([1, 0]))
    with pytest.raises(
        ValueError, match=r"^events need 1-D arrays of one length; got shapes \[\(2,\), \(2,\), \(2,\), \(1,\)\].$"
    ):
        call(np.array([1, 2]), np.array([1]))


def test_invalid_bins_and_decay_are_refused():
    t, x, y, p = np.array([1]), np.array([0]), np.array([0]), np.array([1])
    with pytest.raises(ValueError, match="^voxel_grid needs num_bins >= 1; got 0.$"):
        voxel_grid(t, x, y, p, 0, 2, 2)
    for tau in (0.0, -1.0):
        with pytest.raises(ValueError, match=rf"^time_surface needs tau_us > 0 \(microseconds\); got {tau}.$"):
            time_surface(t, x, y, p, 2, 2, 10, tau)


def test_voxel_grid_depends_on_time_since_the_first_event_only():
    # The hand-checked split above, starting at t = 1000 instead of 0.
    t = np.array([0, 150, 400])
    x, y, p = np.array([0, 2, 4]), np.array([0, 1, 3]), np.array([1, -1, 1])
    np.testing.assert_array_equal(voxel_grid(t + 1_000, x, y, p, 5, H, W), voxel_grid(t, x, y, p, 5, H, W))


@pytest.mark.parametrize("height, width", [(0, 4), (4, 0), (-1, 4)])
def test_a_sensor_without_pixels_is_refused(height, width):
    with pytest.raises(ValueError, match=f"^image size must be positive; got height={height}, width={width}.$"):
        count_frame(np.array([0]), np.array([0]), np.array([1]), height, width)


def test_coordinate_checks_by_hand():
    one = np.array([0])
    assert count_frame(one, one, np.array([1]), 1, 1).tolist() == [[[1.0]], [[0.0]]]  # a 1 x 1 sensor is valid
    outside = "^event coordinates fall outside the 4 x 3 sensor"
    for x, y in ((4, 0), (0, 3), (-1, 0), (0, -1)):
        with pytest.raises(ValueError, match=outside):
            count_frame(np.array([x]), np.array([y]), np.array([1]), 3, 4)
    with pytest.raises(
        ValueError, match=r"^events need 1-D arrays of one length; got shapes \[\(1, 1\), \(1, 1\), \(1, 1\)\].$"
    ):
        count_frame(np.zeros((1, 1), int), np.zeros((1, 1), int), np.ones((1, 1), int), 3, 4)
    with pytest.raises(ValueError, match="one length"):
        count_frame(np.array([0, 1]), np.array([0, 1]), np.array([1]), 3, 4)  # a polarity missing


def test_window_bounds_by_hand():
    # fixed_count: window k = events [k N / T, (k + 1) N / T)
    assert window_bounds(np.arange(7), 3, "fixed_count").tolist() == [0, 2, 4, 7]
    # uniform: T equal durations over [first, last + 1): 11 us in 2 -> edges 0, 5, 11 (floored)
    t = np.array([0, 5, 6, 10])
    assert window_bounds(t, 2, "uniform").tolist() == [0, 1, 4]
    assert window_bounds(np.array([5]), 2, "uniform").tolist() == [0, 0, 1]  # one event: the last window
    # fixed_duration with an event every microsecond, so the bounds show the edges themselves:
    # 101 us, 2 x 20 us -> 61 us of slack, centred: the span starts at 61 // 2 = 30
    assert window_bounds(np.arange(101), 2, "fixed_duration", window_us=20).tolist() == [30, 50, 70]
    assert window_bounds(np.arange(30), 2, "fixed_duration", window_us=20).tolist() == [0, 20, 30]  # shorter: no slack
    for window in ("fixed_count", "uniform", "fixed_duration"):
        empty = window_bounds(np.array([], np.int64), 3, window, window_us=5)
        assert empty.dtype == np.int64 and empty.tolist() == [0, 0, 0, 0]
        assert window_bounds(np.arange(5), 2, window, window_us=1).dtype == np.int64


def test_fixed_duration_windows_start_anywhere_in_the_slack_in_training():
    # 45 us, 2 x 20 us: 5 us of slack, so the span starts at 0 .. 5, each possible start drawn.
    starts = {
        int(window_bounds(np.arange(45), 2, "fixed_duration", window_us=20, rng=np.random.default_rng(s))[0])
        for s in range(300)
    }
    assert starts == {0, 1, 2, 3, 4, 5}
    no_slack = {
        int(window_bounds(np.arange(30), 2, "fixed_duration", window_us=20, rng=np.random.default_rng(s))[0])
        for s in range(50)
    }
    assert no_slack == {0}


@pytest.mark.parametrize("window_us", [None, 0, -5])
def test_fixed_duration_needs_a_positive_window(window_us):
    with pytest.raises(
        ValueError, match=rf"^window 'fixed_duration' needs window_us > 0 \(microseconds\), got {window_us}$"
    ):
        window_bounds(np.arange(5), 2, "fixed_duration", window_us=window_us)


def test_an_unknown_window_kind_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"^window 'sliding' is not one of \('fixed_count', 'fixed_duration', 'uniform'\)$"
    ):
        window_bounds(np.arange(5), 2, "sliding")
