"""Contracts of the event container and the PokerEvent/HARDVS event image."""

import numpy as np
import pytest

from velora.events.render import EventStream, event_image

RED, BLUE, WHITE = [255, 0, 0], [0, 0, 255], [255, 255, 255]


def test_empty_window_is_white():
    image = event_image(np.array([], int), np.array([], int), np.array([], bool), 4, 5)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert (image == 255).all()


def test_on_is_red_off_is_blue_rest_white():
    image = event_image(np.array([1, 3]), np.array([0, 2]), np.array([1, -1]), height=3, width=4)
    assert image[0, 1].tolist() == RED  # x=1, y=0
    assert image[2, 3].tolist() == BLUE  # x=3, y=2
    untouched = np.ones((3, 4), bool)
    untouched[0, 1] = untouched[2, 3] = False
    assert (image[untouched] == 255).all()


def test_bool_binary_and_signed_polarity_agree():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 16, 200), rng.integers(0, 12, 200)
    is_on = rng.random(200) < 0.5
    as_bool = event_image(x, y, is_on, 12, 16)
    assert np.array_equal(as_bool, event_image(x, y, is_on.astype(np.uint8), 12, 16))
    assert np.array_equal(as_bool, event_image(x, y, np.where(is_on, 1, -1), 12, 16))


def test_mixed_pixel_shows_net_sign_and_ties_go_to_last_event():
    x = np.zeros(3, int)
    y = np.zeros(3, int)
    assert event_image(x, y, np.array([1, -1, 1]), 1, 1)[0, 0].tolist() == RED  # net +1
    assert event_image(x, y, np.array([-1, 1, -1]), 1, 1)[0, 0].tolist() == BLUE  # net -1
    assert event_image(x[:2], y[:2], np.array([1, -1]), 1, 1)[0, 0].tolist() == BLUE  # tie, last OFF
    assert event_image(x[:2], y[:2], np.array([-1, 1]), 1, 1)[0, 0].tolist() == RED  # tie, last ON


def test_out_of_range_coordinates_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        event_image(np.array([4]), np.array([0]), np.array([1]), 4, 4)


def test_event_stream_casts_dtypes():
    events = EventStream(t=[0, 5, 5], x=[1, 2, 3], y=[0, 0, 1], p=[1, -1, 1], width=4, height=2)
    assert (events.t.dtype, events.x.dtype, events.y.dtype, events.p.dtype) == (np.int64, np.int16, np.int16, np.int8)
    assert len(events) == 3 and events.duration_us == 5


def test_window_is_half_open():
    events = EventStream(t=np.arange(0, 100, 10), x=np.zeros(10), y=np.zeros(10), p=np.ones(10), width=1, height=1)
    window = events.window(20, 50)
    assert window.t.tolist() == [20, 30, 40]
    assert len(events.window(95, 200)) == 0 and window.width == 1


def test_event_stream_rejects_unsorted_time_and_binary_polarity():
    with pytest.raises(ValueError, match="sorted"):
        EventStream(t=[5, 0], x=[0, 0], y=[0, 0], p=[1, 1], width=1, height=1)
    with pytest.raises(ValueError, match="np.where"):
        EventStream(t=[0, 1], x=[0, 0], y=[0, 0], p=[0, 1], width=1, height=1)
    with pytest.raises(ValueError, match="outside"):
        EventStream(t=[0], x=[3], y=[0], p=[1], width=2, height=1)


def test_event_image_equals_a_per_event_reference_on_random_windows():
    """Net count per pixel, ties to the last event's polarity: checked against a plain loop, with
    many events per pixel (counted over the image) and few (sorted)."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(0, 400))
        width, height = (int(rng.integers(1, 9)), int(rng.integers(1, 7))) if trial % 2 else (60, 40)
        x, y = rng.integers(0, width, n), rng.integers(0, height, n)
        p = rng.choice([-1, 1], n)
        expected = np.full((height, width, 3), 255, np.uint8)
        net, last = {}, {}
        for xi, yi, pi in zip(x.tolist(), y.tolist(), p.tolist()):
            net[xi, yi] = net.get((xi, yi), 0) + pi
            last[xi, yi] = pi
        for (xi, yi), value in net.items():
            on = value > 0 or (value == 0 and last[xi, yi] > 0)
            expected[yi, xi] = (255, 0, 0) if on else (0, 0, 255)
        np.testing.assert_array_equal(event_image(x, y, p, height, width), expected, err_msg=f"trial {trial}")
