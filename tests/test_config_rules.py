"""Every range and cross-field rule of the config: the value just inside each limit is accepted, the value just
outside is refused with the message a user reads (it names the field and the value), and every problem is listed."""

from __future__ import annotations

import pytest

from velora.config import Config, ConfigError

MLP_NEEDS = (
    "'model.shared_lora' mlp_bottleneck uses the final block's own fc1 and fc2 adapters of each stream: set "
    "model.stream_path=all_blocks_projected and include fc1 and fc2 in lora.targets"
)
NON_NEGATIVE = "'train.warmup_epochs', 'train.weight_decay' and 'train.grad_clip' must be >= 0"


def problems(raw: dict) -> list[str]:
    """The problems Config.from_dict lists for `raw`, one a line; empty when it is accepted."""
    try:
        Config.from_dict(raw, source="rules.yaml")
    except ConfigError as err:
        head, *lines = str(err).split("\n  - ")
        assert head == f"{len(lines)} problem(s) in rules.yaml:"
        return lines
    return []


# Values on the limit or just inside it: accepted.
ACCEPTED = [
    {"lora": {"rank": 0}},  # 0 removes the adapters (linear probe)
    {"lora": {"rank": 0, "alpha": 0}},  # no adapters: alpha is never used
    {"lora": {"rank": 0, "targets": []}},  # no adapters: nothing to target
    {"lora": {"rank": 1, "alpha": 0.5}},
    {"lora": {"dropout": 0}},
    {"lora": {"dropout": 0.99}},
    {"model": {"image_size": 1}},
    {"model": {"num_classes": 2}},
    {"model": {"high_level_blocks": 1}},
    {"model": {"recon_weight": 0}},
    {"model": {"recon_weight": 0.5}},
    {"model": {"modality_dropout": 0}},
    {"model": {"modality_dropout": 0.5}},
    {"model": {"head_dropout": 0}},
    {"model": {"head_dropout": 0.99}},
    {"model": {"modalities": ["event", "rgb"]}, "data": {"modalities": ["event"]}},  # a sensor left out
    {"model": {"shared_lora": "mlp_bottleneck"}, "lora": {"rank": 0}},  # no adapters: nothing to share
    {
        "model": {"shared_lora": "mlp_bottleneck", "stream_path": "all_blocks_projected"},
        "lora": {"targets": ["fc1", "fc2", "qkv"]},
    },
    {"data": {"num_frames": 1}},
    {"data": {"crop_scale": [1, 1]}},  # [1, 1] disables the crop
    {"data": {"crop_scale": [0.01, 0.02]}},
    {"data": {"format": "packed", "packed_root": "packed/"}},
    {"data": {"event_window": "fixed_duration", "event_window_us": 1}},
    {"data": {"sensor_size": [1, 1]}},
    {"data": {"sensor_size": [346, 260]}},
    {"data": {"num_workers": 0}},
    {"train": {"epochs": 1, "batch_size": 1, "val_every": 1, "log_every": 1, "num_nodes": 1}},
    {"train": {"lr": 1e-4, "min_lr": 1e-4}},  # a constant rate after the warmup
    {"train": {"min_lr": 0}},
    {"train": {"checkpoint_every_steps": 0}},  # epoch ends only
    {"train": {"warmup_epochs": 0, "weight_decay": 0, "grad_clip": 0}},
    {"train": {"grad_clip": 0.5}},
    {"eval": {"views": 1, "crops": 1}},
    {"eval": {"crops": 3}},
    {"eval": {"crops": 5}},
    {"eval": {"crop_fraction": 1}},
    {"eval": {"crop_fraction": 0.01}},
]


@pytest.mark.parametrize("raw", ACCEPTED, ids=repr)
def test_values_on_or_inside_each_limit_are_accepted(raw):
    assert problems(raw) == []


# Values just outside each limit: refused, with every problem they cause.
REFUSED = [
    ({"lora": {"rank": -1}}, ["'lora.rank' must be >= 0, got -1"]),
    ({"lora": {"rank": 4, "alpha": 0}}, ["'lora.alpha' must be > 0, got 0.0"]),
    ({"lora": {"rank": 1, "alpha": -1}}, ["'lora.alpha' must be > 0, got -1.0"]),
    ({"lora": {"dropout": 1}}, ["'lora.dropout' must be in [0, 1), got 1.0"]),
    ({"lora": {"dropout": -0.01}}, ["'lora.dropout' must be in [0, 1), got -0.01"]),
    ({"lora": {"rank": 1, "targets": []}}, ["'lora.targets' is empty; name at least one Linear layer (e.g. fc1, fc2)"]),
    ({"model": {"image_size": 0}}, ["'model.image_size' must be positive, got 0"]),
    ({"model": {"num_classes": 1}}, ["'model.num_classes' must be at least 2, got 1"]),
    ({"model": {"high_level_blocks": 0}}, ["'model.high_level_blocks' must be at least 1, got 0"]),
    ({"model": {"recon_weight": -0.1}}, ["'model.recon_weight' must be >= 0, got -0.1"]),
    ({"model": {"modality_dropout": 0.51}}, ["'model.modality_dropout' must be in [0, 0.5], got 0.51"]),
    ({"model": {"modality_dropout": -0.1}}, ["'model.modality_dropout' must be in [0, 0.5], got -0.1"]),
    ({"model": {"head_dropout": 1}}, ["'model.head_dropout' must be in [0, 1), got 1.0"]),
    (
        {"model": {"modalities": ["rgb", "rgb"]}, "data": {"modalities": ["rgb"]}},
        ["'model.modalities' must be a non-empty subset of [rgb, event], got ['rgb', 'rgb']"],
    ),
    (
        {"model": {"modalities": ["rgb", "depth"]}, "data": {"modalities": ["rgb"]}},
        ["'model.modalities' must be a non-empty subset of [rgb, event], got ['rgb', 'depth']"],
    ),
    (
        {"model": {"modalities": ["rgb"]}, "data": {"modalities": []}},
        ["'data.modalities' must be a non-empty subset of [rgb, event], got []"],
    ),
    (
        {"model": {"modalities": ["rgb"]}, "data": {"modalities": ["rgb", "event"]}},
        [
            "'data.modalities' names ['event'], which the model has no adapters for (model.modalities ['rgb']); "
            "add them to model.modalities or leave them out of the data"
        ],
    ),
    ({"model": {"shared_lora": "mlp_bottleneck"}, "lora": {"rank": 1}}, [MLP_NEEDS]),
    (
        {
            "model": {"shared_lora": "mlp_bottleneck", "stream_path": "all_blocks_projected"},
            "lora": {"targets": ["fc1", "qkv"]},
        },
        [MLP_NEEDS],
    ),
    ({"data": {"num_frames": 0}}, ["'data.num_frames' must be at least 1, got 0"]),
    ({"data": {"crop_scale": [0, 1]}}, ["'data.crop_scale' must be [low, high] with 0 < low <= high <= 1, got [0, 1]"]),
    (
        {"data": {"crop_scale": [0.5, 1.01]}},
        ["'data.crop_scale' must be [low, high] with 0 < low <= high <= 1, got [0.5, 1.01]"],
    ),
    (
        {"data": {"crop_scale": [0.9, 0.8]}},
        ["'data.crop_scale' must be [low, high] with 0 < low <= high <= 1, got [0.9, 0.8]"],
    ),
    (
        {"data": {"crop_scale": [0.5, 0.8, 1.0]}},
        ["'data.crop_scale' must be [low, high] with 0 < low <= high <= 1, got [0.5, 0.8, 1.0]"],
    ),
    (
        {"data": {"crop_scale": [0.5, "1"]}},
        ["'data.crop_scale' must be [low, high] with 0 < low <= high <= 1, got [0.5, '1']"],
    ),
    (
        {"data": {"format": "packed"}},
        ["'data.format' packed needs data.packed_root (the output of `velora convert packed`)"],
    ),
    (
        {"data": {"event_window": "fixed_duration", "event_window_us": 0}},
        ["'data.event_window' fixed_duration needs data.event_window_us > 0 (microseconds)"],
    ),
    (
        {"data": {"sensor_size": [346]}},
        ["'data.sensor_size' must be [width, height] of positive ints or empty, got [346]"],
    ),
    (
        {"data": {"sensor_size": [346.0, 260]}},
        ["'data.sensor_size' must be [width, height] of positive ints or empty, got [346.0, 260]"],
    ),
    (
        {"data": {"sensor_size": [0, 260]}},
        ["'data.sensor_size' must be [width, height] of positive ints or empty, got [0, 260]"],
    ),
    ({"data": {"num_workers": -1}}, ["'data.num_workers' must be >= 0, got -1"]),
    # a layout's own rules are listed with the others
    (
        {"data": {"representation": "count"}},
        [
            "'data.representation' count draws events, but layout frames reads event images already drawn (PNG); "
            "use a layout that reads events (events, recordings, gesture) or event_image"
        ],
    ),
    ({"train": {"epochs": 0}}, ["'train.epochs' must be at least 1, got 0"]),
    ({"train": {"batch_size": 0}}, ["'train.batch_size' must be at least 1, got 0"]),
    ({"train": {"val_every": 0}}, ["'train.val_every' must be at least 1, got 0"]),
    ({"train": {"log_every": 0}}, ["'train.log_every' must be at least 1, got 0"]),
    ({"train": {"num_nodes": 0}}, ["'train.num_nodes' must be at least 1, got 0"]),
    (
        {"train": {"lr": 0, "min_lr": 0}},
        ["'train.lr' must be > 0, got 0.0"],
    ),
    ({"train": {"lr": 1e-4, "min_lr": 2e-4}}, ["'train.min_lr' must be in [0, train.lr], got 0.0002"]),
    ({"train": {"min_lr": -1e-6}}, ["'train.min_lr' must be in [0, train.lr], got -1e-06"]),
    (
        {"train": {"checkpoint_every_steps": -1}},
        ["'train.checkpoint_every_steps' must be >= 0 (0: epoch ends only), got -1"],
    ),
    ({"train": {"warmup_epochs": -1}}, [NON_NEGATIVE]),
    ({"train": {"weight_decay": -1e-4}}, [NON_NEGATIVE]),
    ({"train": {"grad_clip": -1}}, [NON_NEGATIVE]),
    ({"eval": {"views": 0}}, ["'eval.views' must be at least 1, got 0"]),
    ({"eval": {"crops": 2}}, ["'eval.crops' must be 1, 3 or 5, got 2"]),
    ({"eval": {"crops": 6}}, ["'eval.crops' must be 1, 3 or 5, got 6"]),
    ({"eval": {"crop_fraction": 0}}, ["'eval.crop_fraction' must be in (0, 1], got 0.0"]),
    ({"eval": {"crop_fraction": 1.01}}, ["'eval.crop_fraction' must be in (0, 1], got 1.01"]),
]


@pytest.mark.parametrize("raw, expected", REFUSED, ids=[repr(raw) for raw, _ in REFUSED])
def test_values_just_outside_each_limit_are_refused_by_name_and_value(raw, expected):
    assert problems(raw) == expected


def test_every_broken_rule_is_listed_in_one_error_in_order():
    raw = {
        "model": {"head_pool": "max", "image_size": 0},  # a wrong choice does not hide the next key's problem
        "lora": {"rank": -1, "dropout": 1.0},
        "train": {"output_dir": 5},
        "eval": {"crops": 2},
    }
    with pytest.raises(ConfigError) as err:
        Config.from_dict(raw, source="run.yaml")
    assert str(err.value) == (
        "6 problem(s) in run.yaml:\n"
        "  - 'model.head_pool' must be one of cls, mean, got 'max'\n"
        "  - 'train.output_dir' must be str, got 5\n"
        "  - 'lora.rank' must be >= 0, got -1\n"
        "  - 'lora.dropout' must be in [0, 1), got 1.0\n"
        "  - 'model.image_size' must be positive, got 0\n"
        "  - 'eval.crops' must be 1, 3 or 5, got 2"
    )
