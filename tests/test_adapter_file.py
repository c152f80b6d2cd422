"""Adapter files on their own: key names of older files migrated, what is written is read back,
and a file that is not a velora adapter file, or does not fit its model, is refused by name."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import fill_adapters, random_clip
from velora.errors import CheckpointError
from velora.model import adapter_file
from velora.model.adapter_file import FORMAT, load_model, load_trainable, migrate_keys, read_adapters, save_adapters
from velora.model.velora import VELoRA

# Names of trainable tensors before the high-level part moved to model/fusion.py, and now.
OLD_TO_NEW = {
    "shared_rgb.0.lora_a": "fusion.shared_rgb.0.lora_a",
    "shared_event.1.lora_b": "fusion.shared_event.1.lora_b",
    "fusion_blocks.0.mlp.fc1.weight": "fusion.blocks.0.mlp.fc1.weight",
}
UNCHANGED = [
    "head.weight",
    "fusion.shared_rgb.1.lora_b",  # already the new name
    "fusion.blocks.0.norm1.weight",
    "backbone.blocks.0.mlp.fc1.adapters.rgb.lora_a",
    "recon_decoder.shared_rgb.x",  # an old prefix inside a name, not at its start
]


def tensors(names) -> dict[str, torch.Tensor]:
    return {name: torch.full((2,), float(k)) for k, name in enumerate(names)}


def test_old_key_names_are_migrated_and_others_kept():
    state = tensors([*OLD_TO_NEW, *UNCHANGED])
    migrated = migrate_keys(state)
    assert list(migrated) == [*OLD_TO_NEW.values(), *UNCHANGED]  # names in place, order kept
    for old, new in OLD_TO_NEW.items():
        assert migrated[new] is state[old]
    for name in UNCHANGED:
        assert migrated[name] is state[name]


def test_a_prefix_migrates_the_names_under_it_only():
    # Lightning checkpoints hold the model under "model." (velora.training.module).
    state = tensors(
        [
            "model.shared_event.0.lora_a",
            "model.fusion_blocks.1.attn.qkv.weight",
            "shared_rgb.0.lora_a",
            "model.head.bias",
        ]
    )
    assert list(migrate_keys(state, prefix="model.")) == [
        "model.fusion.shared_event.0.lora_a",
        "model.fusion.blocks.1.attn.qkv.weight",
        "shared_rgb.0.lora_a",  # not under the prefix
        "model.head.bias",
    ]


def build(tiny_config, **sections) -> tuple[VELoRA, object]:
    cfg = tiny_config(**sections)
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg).eval()
    fill_adapters(model, seed=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and not name.endswith(("lora_a", "lora_b")):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    return model, cfg


def rename_to_old(path, out) -> int:
    """Write `path` again with the names of files written before the move; how many were renamed."""
    state = load_file(str(path))
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    old = {}
    for key, value in state.items():
        for old_prefix, new_prefix in (
            ("fusion.shared_rgb.", "shared_rgb."),
            ("fusion.shared_event.", "shared_event."),
            ("fusion.blocks.", "fusion_blocks."),
        ):
            if key.startswith(old_prefix):
                key = new_prefix + key[len(old_prefix) :]
                break
        old[key] = value
    save_file(old, str(out), metadata=header["__metadata__"])
    return sum(a != b for a, b in zip(sorted(state), sorted(old)))


@pytest.mark.parametrize(
    "sections", [{}, {"model": {"fusion_block": "random_trainable"}}], ids=["shared_lora", "fusion_blocks"]
)
def test_a_file_with_old_key_names_loads_the_same_model(tiny_config, tmp_path, sections):
    model, cfg = build(tiny_config, **sections)
    new = save_adapters(tmp_path / "new.safetensors", model, cfg, [f"c{i}" for i in range(8)])
    assert rename_to_old(new, tmp_path / "old.safetensors") > 0
    rgb, events = random_clip(2, 3, seed=1), random_clip(2, 3, seed=2)
    with torch.no_grad():
        expected = model(rgb, events).logits
        for path in (new, tmp_path / "old.safetensors"):
            loaded, _ = load_model(path)
            torch.testing.assert_close(loaded(rgb, events).logits, expected, atol=1e-6, rtol=1e-6)


def test_what_is_written_is_read_back(tiny_config, tmp_path):
    model, cfg = build(tiny_config)
    names = [f"class {i}" for i in range(8)]
    path = save_adapters(tmp_path / "sub" / "a.safetensors", model, cfg, names, info={"epoch": 3})
    assert path == tmp_path / "sub" / "a.safetensors" and not (tmp_path / "sub" / "a.safetensors.tmp").exists()
    ckpt = read_adapters(path)
    assert ckpt.class_names == names and ckpt.info == {"epoch": 3}
    assert ckpt.config.to_dict() == cfg.to_dict()
    assert ckpt.weights_source == model.weights_source
    trainable = model.trainable_state_dict()
    assert ckpt.state.keys() == trainable.keys()
    assert all(torch.equal(ckpt.state[k], trainable[k]) for k in trainable)
    assert not any(k.startswith("backbone.") and ".adapters." not in k for k in ckpt.state)


def test_read_adapters_refuses_what_is_not_an_adapter_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_adapters(tmp_path / "missing.safetensors")
    (tmp_path / "text.safetensors").write_text("not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_adapters(tmp_path / "text.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"not a velora adapter checkpoint \(format 'pt', expected 'velora-adapters/1'\)"
    ):
        read_adapters(tmp_path / "other.safetensors")


@pytest.mark.parametrize(
    "metadata, match",
    [
        ({"config": "{not json"}, "corrupt metadata"),
        ({"class_names": json.dumps([1, 2])}, "a list of class names"),
        ({"class_names": json.dumps("abc")}, "a list of class names"),
        ({"info": json.dumps([1])}, "an info mapping"),
        ({"config": json.dumps([1])}, "a config mapping"),
        ({"weights_source": json.dumps("x")}, "corrupt metadata"),
        ({"config": json.dumps({"model": {"num_classes": "many"}})}, "num_classes"),
    ],
)
def test_corrupt_metadata_is_refused_naming_the_file(tiny_config, tmp_path, metadata, match):
    good = {"format": FORMAT, "config": json.dumps(tiny_config().to_dict()), "class_names": "[]", "info": "{}"}
    path = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={**good, **metadata})
    with pytest.raises(CheckpointError, match=match) as raised:
        read_adapters(path)
    assert str(path) in str(raised.value)


def test_a_state_that_does_not_fit_the_model_names_what_is_missing_and_unexpected(tiny_config):
    model, _ = build(tiny_config)
    state = dict(model.trainable_state_dict())
    state.pop("head.bias")
    state["head.extra"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError, match=r"my.safetensors does not fit.*missing \['head.bias'\], unexpected \['head.extra'\]"
    ):
        load_trainable(model, state, "my.safetensors")


def test_a_file_whose_tensors_do_not_fit_its_own_config_is_refused_naming_it(tiny_config, tmp_path):
    from safetensors import safe_open

    model, cfg = build(tiny_config)
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [f"c{i}" for i in range(8)])
    with safe_open(str(path), "pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    del state["head.bias"]  # a file cut by hand, or written by another version of the model
    save_file(state, str(tmp_path / "cut.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path / 'cut.safetensors'))} does not fit"):
        load_model(tmp_path / "cut.safetensors")


def weights_file(model: VELoRA, path, shift: float = 0.0):
    """The model's frozen backbone as a timm-named weights file (shifted: other weights, another sha256)."""
    from velora.model.lora import base_state_dict

    state = {k: (v + shift).contiguous() for k, v in base_state_dict(model.backbone).items()}
    save_file(state, str(path))
    return path


def test_weights_given_at_load_replace_the_stored_ones_and_a_changed_file_warns_from_the_caller(tiny_config, tmp_path):
    import warnings

    model, cfg = build(tiny_config)
    same = weights_file(model, tmp_path / "same.safetensors")
    trained = build_on(tiny_config, same)
    path = save_adapters(
        tmp_path / "a" / "b" / "adapters.safetensors", trained, trained_cfg(tiny_config, same), ["c"] * 8
    )
    loaded, ckpt = load_model(path, weights=same)
    assert ckpt.config.model.weights == str(same) and loaded.weights_source["path"] == str(same)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same file: no warning
        load_model(path)
    other = weights_file(model, tmp_path / "other.safetensors", shift=0.5)
    with pytest.warns(UserWarning) as caught:
        reloaded, _ = load_model(path, weights=other)
    message = str(caught[0].message)
    sha_same, sha_other = trained.weights_source["sha256"], reloaded.weights_source["sha256"]
    assert f"sha256 {sha_same[:16]}..., but {other} has sha256 {sha_other[:16]}...:" in message
    # stacklevel: the line that called load_model, not load_model's own (under mutation testing mutmut's
    # trampoline adds a frame between them, so there the caller's file is checked only to be another one)
    assert caught[0].filename != adapter_file.__file__
    assert caught[0].filename == __file__ or "MUTANT_UNDER_TEST" in os.environ


def build_on(tiny_config, weights):
    model = VELoRA.from_config(trained_cfg(tiny_config, weights))
    fill_adapters(model)
    return model


def trained_cfg(tiny_config, weights):
    return tiny_config(f"model.weights={weights}")


def test_a_state_missing_names_only_is_refused_listing_five_of_them(tiny_config):
    model, _ = build(tiny_config)
    state = dict(model.trainable_state_dict())
    dropped = sorted(state)[:7]
    for name in dropped:
        state.pop(name)
    with pytest.raises(CheckpointError, match=r"missing \[") as raised:
        load_trainable(model, state, "x.safetensors")
    listed = re.search(r"missing \[(.*?)\]", str(raised.value)).group(1)
    assert listed.count("'") == 2 * 5 and "unexpected []" in str(raised.value)


def test_a_state_with_unexpected_names_only_is_refused_listing_five_of_them(tiny_config):
    model, _ = build(tiny_config)
    state = dict(model.trainable_state_dict())
    extra = [f"head.extra{i}" for i in range(7)]
    state.update({name: torch.zeros(1) for name in extra})
    with pytest.raises(CheckpointError, match=r"missing \[\], unexpected \[") as raised:
        load_trainable(model, state, "x.safetensors")
    listed = re.search(r"unexpected \[(.*?)\]", str(raised.value)).group(1)
    assert listed == ", ".join(repr(name) for name in extra[:5])


def test_a_model_is_loaded_onto_the_device_asked_for(tiny_config, tmp_path):
    model, cfg = build(tiny_config)
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [f"c{i}" for i in range(8)])
    loaded, _ = load_model(path, device="meta")  # a device every machine has, other than the default cpu
    assert {p.device.type for p in loaded.parameters()} == {"meta"} and not loaded.training


def test_a_file_without_class_names_or_info_reads_them_empty_but_one_without_a_config_is_refused(tiny_config, tmp_path):
    config = json.dumps(tiny_config().to_dict())
    path = tmp_path / "sparse.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": FORMAT, "config": config})
    ckpt = read_adapters(path)
    assert ckpt.class_names == [] and ckpt.info == {} and ckpt.weights_source == {}
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": FORMAT})
    with pytest.raises(CheckpointError, match="needs a config mapping, a list of class names and an info mapping"):
        read_adapters(path)


def test_a_model_without_a_weights_record_saves_an_empty_one(tiny_config, tmp_path):
    model, cfg = build(tiny_config)

    class Plain(torch.nn.Module):  # a model that does not say where its weights came from
        def __init__(self):
            super().__init__()
            self.inner = model

        def trainable_state_dict(self):
            return model.trainable_state_dict()

    path = save_adapters(tmp_path / "plain.safetensors", Plain(), cfg, ["c"] * 8)
    assert read_adapters(path).weights_source == {}
