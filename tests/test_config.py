"""Config contracts: one typed source of truth, every problem listed, overrides, round trips."""

from __future__ import annotations

import dataclasses
import io

import pytest
import yaml

from conftest import REPO_ROOT
from velora.config import (
    Config,
    ConfigError,
    _f,
    _summary,
    describe_fields,
    field_choices,
    load_config,
    parse_overrides,
    shipped_config_path,
    stored_config,
)

SHIPPED = [
    "demo",
    "pokerevent_vitb16",
    "hardvs_vitb16",
    "pokerevent_vitb16_release",
    "hardvs_vitb16_release",
    "dvs128_gesture",
    "ncaltech101",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    raw = yaml.safe_load(shipped_config_path(name).read_text())
    for section, values in raw.items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_match_the_repository_copies(name):
    repo_copy = REPO_ROOT / "configs" / f"{name}.yaml"
    assert repo_copy.read_text() == shipped_config_path(name).read_text()
    assert load_config(str(repo_copy)) == load_config(name)


def test_paper_configs_have_the_paper_settings():
    poker, hardvs = load_config("pokerevent_vitb16"), load_config("hardvs_vitb16")
    assert poker.model.num_classes == 114 and hardvs.model.num_classes == 300
    for cfg in (poker, hardvs):
        assert cfg.model.backbone == "vit_base_patch16_clip_quickgelu_224.openai"  # OpenAI CLIP, named
        assert cfg.model.image_size == 224 and cfg.lora.rank == 4 and cfg.lora.targets == ["fc1", "fc2"]


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"lora": {"rnak": 8}})
    message = str(err.value)
    assert "'lora.rnak'" in message
    assert "did you mean 'lora.rank'" in message


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*did you mean 'train'"):
        Config.from_dict({"trian": {"lr": 0.1}})


def test_every_problem_is_listed_in_one_error():
    raw = {
        "model": {"num_clases": 10, "image_size": "big", "fusion_block": "magic"},
        "lora": {"rank": -1},
        "train": {"lr": 0.0, "epochs": 0},
    }
    with pytest.raises(ConfigError) as err:
        Config.from_dict(raw, source="broken.yaml")
    message = str(err.value)
    assert "7 problem(s) in broken.yaml" in message
    for fragment in (
        "'model.num_clases'",
        "did you mean 'model.num_classes'",
        "'model.image_size' must be int, got 'big'",
        "'model.fusion_block' must be one of backbone_lora, random_trainable, got 'magic'",
        "'lora.rank' must be >= 0, got -1",
        "'train.lr' must be > 0",
        "'train.epochs' must be at least 1",
    ):
        assert fragment in message, fragment


@pytest.mark.parametrize(
    "section, key, value, fragment",
    [
        ("model", "image_size", 3.5, "'model.image_size' must be int"),
        ("model", "frame_diff", "yes", "'model.frame_diff' must be bool"),
        ("lora", "rank", True, "'lora.rank' must be int"),
        ("lora", "targets", "fc1", "'lora.targets' must be list"),
        ("train", "lr", "fast", "'train.lr' must be a finite float"),
        ("model", "backbone_args", [1, 2], "'model.backbone_args' must be dict"),
        ("data", "modalities", ["rgb", "depth"], "'data.modalities' must be a non-empty subset"),
        ("data", "crop_scale", [0.9, 0.5], "'data.crop_scale' must be [low, high]"),
        ("model", "modality_dropout", 0.9, "'model.modality_dropout' must be in [0, 0.5]"),
    ],
)
def test_wrong_types_and_ranges(section, key, value, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        Config.from_dict({section: {key: value}})
    assert fragment in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), ".nan", "nan"])
def test_non_finite_learning_rate_is_rejected(value):
    with pytest.raises(ConfigError, match="'train.lr'"):
        Config.from_dict({"train": {"lr": value}})


def test_section_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match="'train' must be a mapping"):
        Config.from_dict({"train": 3})


def test_ints_are_accepted_for_floats():
    cfg = Config.from_dict({"train": {"lr": 1, "min_lr": 0}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_override_parsing():
    assert parse_overrides(["train.lr=0.0003", "data.modalities=[rgb]", "model.frame_diff=false"]) == {
        "train": {"lr": 0.0003},
        "data": {"modalities": ["rgb"]},
        "model": {"frame_diff": False},
    }
    cfg = load_config("demo", ["data.modalities=[rgb]", "model.backbone_args={depth: 2}", "train.epochs=3"])
    assert cfg.data.modalities == ["rgb"]
    assert cfg.model.backbone_args == {"depth": 2}  # replaced, not merged into the file's dict
    assert cfg.train.epochs == 3
    assert cfg.model.image_size == 64  # untouched fields keep the file's value


def test_exponent_notation_override_is_a_float():
    # `train.lr=3e-4` is the example in the CLI help and in parse_overrides' docstring.
    assert load_config(None, ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)
    assert load_config(None, ["train.lr=3e-4", "train.min_lr=1e-6"]).train.min_lr == pytest.approx(1e-6)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lr", "must look like section.field=value"),
        ("lr=0.1", "must be section.field"),
        ("train.opt.lr=0.1", "must be section.field"),
        ("train.lr=[0.1", "not valid YAML"),
    ],
)
def test_malformed_override(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_override_with_unknown_field_names_it():
    with pytest.raises(ConfigError, match=r"'train\.epoch'.*did you mean 'train\.epochs'"):
        load_config("demo", ["train.epoch=3"])


def test_missing_config_path_lists_the_shipped_names(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "nope.yaml"))
    message = str(err.value)
    assert "nope.yaml" in message
    for name in SHIPPED:
        assert name in message


def test_bad_yaml_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(str(path))
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(str(path))


def test_config_round_trips_through_dicts_and_yaml(tiny_config):
    cfg = tiny_config("lora.rank=8", model={"fusion_block": "random_trainable"}, data={"modalities": ["event"]})
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert Config.from_dict(Config().to_dict()) == Config()
    assert cfg.to_dict()["lora"]["rank"] == 8


def test_defaults_are_not_shared_between_instances():
    a, b = Config(), Config()
    a.lora.targets.append("qkv")
    a.data.modalities.remove("rgb")
    assert b.lora.targets == ["fc1", "fc2"] and b.data.modalities == ["rgb", "event"]


def test_every_field_is_documented():
    text = describe_fields()
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help text"
            assert f"{section.name}.{f.name} = " in text


def test_unknown_key_without_a_close_name_lists_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"lora": {"zzz": 1}})
    assert str(err.value).endswith("  - unknown key 'lora.zzz' (valid keys here: rank, alpha, dropout, targets)")


def test_config_that_is_not_a_mapping_is_named_at_the_top_level():
    with pytest.raises(ConfigError, match=r"'top level' must be a mapping, got \[1, 2\]"):
        Config.from_dict([1, 2])


def test_empty_sections_take_their_defaults(tmp_path):
    # `model:` with nothing under it is None in YAML: the section's defaults, not an error
    path = tmp_path / "empty.yaml"
    path.write_text("model:\nlora:\n")
    assert load_config(str(path)) == Config()
    assert Config.from_dict(None) == Config()


def test_string_fields_refuse_other_types():
    with pytest.raises(ConfigError, match=r"'train.output_dir' must be str, got 5"):
        Config.from_dict({"train": {"output_dir": 5}})


def test_error_names_its_source():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"lora": {"rank": -1}})
    assert str(err.value) == "1 problem(s) in config:\n  - 'lora.rank' must be >= 0, got -1"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["lora.rank=-1"])
    assert str(err.value).startswith("1 problem(s) in defaults + command-line overrides:\n")
    with pytest.raises(ConfigError) as err:
        load_config("demo", ["lora.rank=-1"])
    assert str(err.value).startswith(f"1 problem(s) in {shipped_config_path('demo')} + command-line overrides:\n")


def test_error_in_a_config_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lora:\n  rank: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value) == f"1 problem(s) in {path}:\n  - 'lora.rank' must be >= 0, got -1"


def test_config_file_is_read_as_utf8_whatever_the_locale(tmp_path, monkeypatch):
    path = tmp_path / "run.yaml"
    path.write_bytes("train:\n  output_dir: runs/café\n".encode())
    assert load_config(str(path)).train.output_dir == "runs/café"
    # a locale whose encoding is not UTF-8 (Windows' cp1252, a POSIX locale without coercion): io.text_encoding
    # is what a file opened without an encoding falls back on
    text_encoding = io.text_encoding
    monkeypatch.setattr(
        io, "text_encoding", lambda encoding, *a: "ascii" if encoding is None else text_encoding(encoding)
    )
    assert load_config(str(path)).train.output_dir == "runs/café"


def test_override_value_may_hold_an_equals_sign():
    assert parse_overrides(["train.output_dir=runs/lr=3e-4", "data.root=a=b=c"]) == {
        "train": {"output_dir": "runs/lr=3e-4"},
        "data": {"root": "a=b=c"},
    }


@pytest.mark.parametrize("name", ["demo", "demo.yaml", "configs/demo.yaml", str(REPO_ROOT / "configs" / "demo.yaml")])
def test_shipped_config_by_name_file_name_or_path(name):
    assert shipped_config_path(name) == shipped_config_path("demo")
    assert shipped_config_path(name).name == "demo.yaml" and shipped_config_path(name).is_file()


def test_missing_config_lists_the_shipped_names_sorted(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "nope.yaml"))
    assert str(err.value).endswith(f"shipped configs: {', '.join(sorted(SHIPPED))}")


def test_help_lists_each_field_with_its_default_and_help_text():
    lines = describe_fields().splitlines()
    assert lines[0] == "model:"
    for section in ("lora:", "data:", "train:", "eval:"):
        assert section in lines
    rank = lines.index("  lora.rank = 4")
    assert (
        lines[rank + 1] == "      LoRA rank r of every adapter; 0 removes all adapters (frozen-backbone linear probe)."
    )
    assert "  lora.targets = ['fc1', 'fc2']" in lines  # a list default is shown as its value
    assert "  model.backbone_args = {}" in lines
    assert "  train.lr = 0.0001" in lines
    assert lines[lines.index("  eval.crops = 1") + 1].startswith("      Test-time spatial crops per temporal view")


def test_config_fields_carry_default_help_and_choices():
    """_f, which declares every config field: its default (a fresh copy of a list or dict per instance), its
    help text, its choices, and dataclass field options passed on."""

    @dataclasses.dataclass
    class Section:
        size: int = _f(3, "Size help.", repr=False)
        kinds: list = _f(["a", "b"], "Kinds help.", repr=False)
        extra: dict = _f({"k": 1}, "Extra help.")
        mode: str = _f("x", "Mode help.", choices=("x", "y"))

    a, b = Section(), Section()
    assert (a.size, a.kinds, a.extra, a.mode) == (3, ["a", "b"], {"k": 1}, "x")
    assert a.kinds is not b.kinds and a.extra is not b.extra
    fields = {f.name: f for f in dataclasses.fields(Section)}
    assert [f.metadata["help"] for f in fields.values()] == ["Size help.", "Kinds help.", "Extra help.", "Mode help."]
    assert field_choices(fields["mode"]) == ("x", "y") and field_choices(fields["size"]) is None
    assert repr(a) == "test_config_fields_carry_default_help_and_choices.<locals>.Section(extra={'k': 1}, mode='x')"


def test_summary_is_a_docstring_on_one_line():
    def drawn():
        """Counts of events per pixel,
        one channel per polarity along X."""

    def undocumented():
        pass

    assert _summary(drawn) == "Counts of events per pixel, one channel per polarity along X"
    assert _summary(undocumented) == ""


def test_stored_config_reads_old_fields_as_their_velora_meant_them():
    # a config saved before data.event_resize and data.frame_pairing existed
    raw = Config().to_dict()
    del raw["data"]["event_resize"], raw["data"]["frame_pairing"], raw["data"]["representation"]
    cfg = stored_config(raw, "old.safetensors")
    assert (cfg.data.event_resize, cfg.data.frame_pairing, cfg.data.representation) == (
        "nearest",
        "position",
        "event_image",
    )
    assert "event_resize" not in raw["data"]  # the caller's dict is left alone
    # fields that were saved keep their value
    raw = Config().to_dict()
    raw["data"].update(event_resize="box", frame_pairing="accumulate")
    cfg = stored_config(raw, "new.safetensors")
    assert (cfg.data.event_resize, cfg.data.frame_pairing) == ("box", "accumulate")
    # events drawn by another representation were area-averaged
    raw = {"model": {"modalities": ["event"]}, "data": {"layout": "events", "modalities": ["event"]}}
    raw["data"]["representation"] = "count"
    assert stored_config(raw, "old.safetensors").data.event_resize == "box"


def test_stored_config_errors_name_the_file():
    with pytest.raises(ConfigError) as err:
        stored_config({"lora": {"rank": -1}}, "model.safetensors (stored config)")
    assert str(err.value).startswith("1 problem(s) in model.safetensors (stored config):")
    with pytest.raises(ConfigError, match=r"in broken \(stored config\):\n  - 'top level' must be a mapping, got \[\]"):
        stored_config([], "broken (stored config)")
