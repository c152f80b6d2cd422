"""LoRA contracts: identity at init, merge == unmerged, checkpoint compatibility with plain timm."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn as nn

from velora.model.lora import (
    LoRAAdapter,
    LoRAError,
    LoRALinear,
    base_state_dict,
    fold_adapters,
    inject_lora,
    lora_layers,
    merge_adapter,
    unmerge_all,
    use_adapter,
)

TINY_VIT = dict(embed_dim=32, depth=3, num_heads=2, img_size=32, num_classes=0)


def plain_vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_clip_quickgelu_224", **TINY_VIT).eval()


def wrapped_vit(targets=("fc1", "fc2"), adapters=("a", "b"), rank=2) -> tuple[nn.Module, nn.Module]:
    plain = plain_vit()
    wrapped = copy.deepcopy(plain)
    inject_lora(wrapped.blocks, list(targets), list(adapters), rank=rank, alpha=4.0)
    return plain, wrapped.eval()


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def randomize(layers: list[LoRALinear], name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            adapter = layer.adapters[name]
            adapter.lora_a.copy_(torch.randn(adapter.lora_a.shape, generator=g) * 0.2)
            adapter.lora_b.copy_(torch.randn(adapter.lora_b.shape, generator=g) * 0.2)


def test_lora_is_the_identity_at_init():
    plain, wrapped = wrapped_vit()
    layers = lora_layers(wrapped)
    assert len(layers) == 2 * 3  # fc1, fc2 in each of 3 blocks
    x = images()
    with torch.no_grad():
        expected = plain(x)
        for name in ("a", "b", None):
            with use_adapter(layers, name):
                assert torch.equal(wrapped(x), expected), f"adapter {name} changes the output at init"


def test_merged_equals_unmerged_and_unmerge_restores_the_weight():
    _, wrapped = wrapped_vit()
    layers = lora_layers(wrapped)
    randomize(layers, "a", seed=1)
    before = {k: v.clone() for k, v in base_state_dict(wrapped).items()}
    x = images()
    with torch.no_grad(), use_adapter(layers, "a"):
        unmerged = wrapped(x)
    with torch.no_grad(), use_adapter(layers, None):
        base = wrapped(x)
    assert not torch.allclose(unmerged, base, atol=1e-4), "a non-zero adapter must change the output"

    merge_adapter(wrapped, "a")
    assert all(layer.merged == "a" for layer in layers)
    assert not torch.equal(layers[0].weight, before["blocks.0.mlp.fc1.weight"])
    with torch.no_grad():
        with use_adapter(layers, "a"):  # active and merged: not added twice
            merged_active = wrapped(x)
        with use_adapter(layers, None):
            merged_inactive = wrapped(x)
    torch.testing.assert_close(merged_active, unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged_inactive, unmerged, atol=1e-5, rtol=1e-5)

    with pytest.raises(LoRAError, match="already merged"):
        merge_adapter(wrapped, "b")

    unmerge_all(wrapped)
    assert all(layer.merged is None for layer in layers)
    for key, value in base_state_dict(wrapped).items():
        torch.testing.assert_close(value, before[key], atol=1e-6, rtol=0)
    with torch.no_grad(), use_adapter(layers, None):
        torch.testing.assert_close(wrapped(x), base, atol=1e-5, rtol=1e-5)


def test_merge_of_unknown_adapter_names_the_existing_ones():
    _, wrapped = wrapped_vit()
    with pytest.raises(LoRAError, match=r"'rgb' not found.*a, b"):
        merge_adapter(wrapped, "rgb")


def test_plain_timm_state_dict_loads_with_only_adapter_keys_missing():
    plain, _ = wrapped_vit()
    fresh = timm.create_model("vit_base_patch16_clip_quickgelu_224", **TINY_VIT).eval()
    inject_lora(fresh.blocks, ["fc1", "fc2"], ["a"], rank=2, alpha=4.0)
    missing, unexpected = fresh.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == []
    assert missing, "the adapters must be reported missing"
    assert all(".adapters." in k for k in missing), [k for k in missing if ".adapters." not in k]
    assert len(missing) == 3 * 2 * 2  # blocks x (fc1, fc2) x (lora_a, lora_b)
    x = images()
    with torch.no_grad(), use_adapter(lora_layers(fresh), "a"):
        assert torch.equal(fresh(x), plain(x))


def test_merged_base_state_dict_loads_strictly_into_plain_vit_and_reproduces_the_adapter():
    _, wrapped = wrapped_vit(targets=("fc1", "fc2", "qkv", "proj"))
    layers = lora_layers(wrapped)
    randomize(layers, "b", seed=2)
    x = images()
    with torch.no_grad(), use_adapter(layers, "b"):
        adapted = wrapped(x)
    merge_adapter(wrapped, "b")
    exported = base_state_dict(wrapped)
    assert not any("adapters" in k for k in exported)
    target = timm.create_model("vit_base_patch16_clip_quickgelu_224", **TINY_VIT).eval()
    target.load_state_dict(exported, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(target(x), adapted, atol=1e-5, rtol=1e-5)


def test_wrong_target_name_lists_the_real_linear_names():
    vit = plain_vit()
    with pytest.raises(LoRAError) as err:
        inject_lora(vit.blocks, ["fc3"], ["a"], rank=2, alpha=4.0)
    assert str(err.value) == (
        "LoRA target 'fc3' not found; the blocks' Linear layers are: fc1, fc2, proj, qkv. "
        "Set lora.targets to some of these names."
    )


@pytest.mark.parametrize("targets", [["qkv"], ["proj"], ["qkv", "proj", "fc1", "fc2"]])
def test_attention_targets_are_wrapped_and_change_the_output(targets):
    plain, wrapped = wrapped_vit(targets=targets, adapters=("a",))
    layers = lora_layers(wrapped)
    assert len(layers) == 3 * len(targets)
    suffixes = sorted({n.split(".")[-1] for n, m in wrapped.named_modules() if isinstance(m, LoRALinear)})
    assert suffixes == sorted(targets)
    x = images()
    with torch.no_grad(), use_adapter(layers, "a"):
        assert torch.equal(wrapped(x), plain(x))
    randomize(layers, "a", seed=3)
    with torch.no_grad(), use_adapter(layers, "a"):
        assert not torch.allclose(wrapped(x), plain(x), atol=1e-4)


def test_use_adapter_switches_and_restores():
    _, wrapped = wrapped_vit()
    layers = lora_layers(wrapped)
    assert all(layer.active is None for layer in layers)
    with use_adapter(layers, "a"):
        assert all(layer.active == "a" for layer in layers)
        with use_adapter(layers, "b"):
            assert all(layer.active == "b" for layer in layers)
        assert all(layer.active == "a" for layer in layers)
    assert all(layer.active is None for layer in layers)
    with pytest.raises(RuntimeError):
        with use_adapter(layers, "b"):
            raise RuntimeError("boom")
    assert all(layer.active is None for layer in layers), "an exception must still restore the adapters"


def test_two_adapters_on_one_layer_are_independent():
    plain, wrapped = wrapped_vit()
    layers = lora_layers(wrapped)
    randomize(layers, "a", seed=4)
    randomize(layers, "b", seed=5)
    x = images()
    with torch.no_grad():
        with use_adapter(layers, "a"):
            out_a = wrapped(x)
        with use_adapter(layers, "b"):
            out_b = wrapped(x)
        with use_adapter(layers, None):
            out_none = wrapped(x)
    assert torch.equal(out_none, plain(x))
    assert not torch.allclose(out_a, out_b, atol=1e-4)
    assert not torch.allclose(out_a, out_none, atol=1e-4)


def test_lora_linear_keeps_linear_parameter_names_and_shares_the_frozen_weight():
    base = nn.Linear(8, 4)
    layer = LoRALinear(base)
    layer.add_adapter("a", rank=2, alpha=4.0)
    assert layer.weight is base.weight and layer.bias is base.bias
    assert set(layer.state_dict()) == {"weight", "bias", "adapters.a.lora_a", "adapters.a.lora_b"}
    adapter = layer.adapters["a"]
    assert adapter.lora_a.shape == (2, 8) and adapter.lora_b.shape == (4, 2)
    assert adapter.scale == 2.0
    with torch.no_grad():
        adapter.lora_b.fill_(0.5)
    x = torch.randn(3, 8)
    layer.active = "a"
    expected = base(x) + 2.0 * (x @ adapter.lora_a.T @ adapter.lora_b.T)
    torch.testing.assert_close(layer(x), expected)


def test_merging_the_active_adapter_does_not_add_it_twice():
    layer = LoRALinear(nn.Linear(8, 4))
    layer.add_adapter("a", rank=2, alpha=4.0)
    with torch.no_grad():
        layer.adapters["a"].lora_b.fill_(0.5)
    x = torch.randn(3, 8)
    layer.active = "a"
    with torch.no_grad():
        unmerged = layer(x)
        layer.merge("a")
        torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=1e-5)
        layer.unmerge()
        torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=1e-5)


def test_row_groups_get_their_own_adapters():
    layer = LoRALinear(nn.Linear(8, 4))
    for name in ("a", "b"):
        layer.add_adapter(name, rank=2, alpha=4.0)
        with torch.no_grad():
            layer.adapters[name].lora_b.normal_()
    x = torch.randn(5, 3, 8)  # 5 images of 3 tokens: rows 0-1 use "a", 2-3 "b", 4 none
    with torch.no_grad(), use_adapter([layer], (("a", 2), ("b", 2), (None, 1))):
        grouped = layer(x)
    for rows, name in ((slice(0, 2), "a"), (slice(2, 4), "b"), (slice(4, 5), None)):
        with torch.no_grad(), use_adapter([layer], name):
            torch.testing.assert_close(grouped[rows], layer(x[rows]), atol=1e-5, rtol=1e-5)


def test_folded_adapters_compute_what_the_low_rank_branches_did_and_leave_the_frozen_weight_alone():
    _, wrapped = wrapped_vit()
    layers = lora_layers(wrapped)
    randomize(layers, "a", seed=1)
    randomize(layers, "b", seed=2)
    x = torch.cat([images(0), images(1), images(2)])  # rows 0-1 "a", 2-3 "b", 4-5 none
    groups = (("a", 2), ("b", 2), (None, 2))
    frozen = [layer.weight.clone() for layer in layers]
    with torch.no_grad():
        before = {name: use_and_run(wrapped, layers, name, x) for name in ("a", "b", None)}
        before["rows"] = use_and_run(wrapped, layers, groups, x)
        fold_adapters(wrapped)
        for name in ("a", "b", None, "rows"):
            after = use_and_run(wrapped, layers, groups if name == "rows" else name, x)
            torch.testing.assert_close(after, before[name], atol=1e-5, rtol=1e-5)
    assert all(torch.equal(layer.weight, w) for layer, w in zip(layers, frozen)), "the frozen weight is not changed"
    assert all(set(layer.folded) == {"a", "b"} for layer in layers)
    with pytest.raises(LoRAError, match="folded"):
        merge_adapter(wrapped, "a")


def use_and_run(model, layers, active, x):
    with use_adapter(layers, active):
        return model(x)


@pytest.mark.parametrize(
    "groups",
    [
        ((None, 1), ("a", 2), ("b", 2)),
        (("a", 2), (None, 1), ("b", 2)),
        (("a", 2), ("b", 2), (None, 1)),
        ((None, 2), ("b", 1), (None, 1), ("a", 1)),
        (("unknown", 1), ("b", 2), ("a", 2)),  # a name this layer has no adapter of: no adapter
    ],
)
def test_rows_without_an_adapter_shift_no_later_group_wherever_they_stand(groups):
    # Expected by the LoRA formula row by row: W x + b, plus (alpha / rank) B A x on rows whose
    # group names one of this layer's adapters.
    layer = LoRALinear(nn.Linear(8, 4))
    g = torch.Generator().manual_seed(3)
    for name in ("a", "b"):
        layer.add_adapter(name, rank=2, alpha=4.0)
        with torch.no_grad():
            layer.adapters[name].lora_a.copy_(torch.randn(2, 8, generator=g))
            layer.adapters[name].lora_b.copy_(torch.randn(4, 2, generator=g))
    rows = sum(n for _, n in groups)
    x = torch.randn(rows, 3, 8, generator=g)
    expected, start = [], 0
    for name, n in groups:
        part = x[start : start + n]
        out = part @ layer.weight.T + layer.bias
        if name in layer.adapters:
            adapter = layer.adapters[name]
            out = out + (4.0 / 2) * (part @ adapter.lora_a.T) @ adapter.lora_b.T
        expected.append(out)
        start += n
    with torch.no_grad(), use_adapter([layer], groups):
        got = layer(x)
    torch.testing.assert_close(got, torch.cat(expected), atol=1e-5, rtol=1e-5)


def test_adapter_is_alpha_over_rank_times_b_a_x_and_starts_as_nn_linear_does():
    adapter = LoRAAdapter(256, 6, rank=16, alpha=4.0)
    # lora_a: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)) as nn.Linear's weight.
    bound = 1 / 256**0.5
    assert adapter.lora_a.abs().max() <= bound and adapter.lora_a.abs().max() > 0.95 * bound
    assert not adapter.lora_b.any()
    with torch.no_grad():
        adapter.lora_b.copy_(torch.randn(6, 16, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(1))
    expected = (4.0 / 16) * (x @ adapter.lora_a.T) @ adapter.lora_b.T
    with torch.no_grad():
        torch.testing.assert_close(adapter(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(adapter.delta_weight(), (4.0 / 16) * adapter.lora_b @ adapter.lora_a)


def layer_with_adapters(dtype=torch.float32) -> LoRALinear:
    """A LoRALinear of nn.Linear(8, 4) (non-zero bias) with adapters "a" and "b", all non-zero."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 4))
    for name in ("a", "b"):
        layer.add_adapter(name, rank=2, alpha=4.0)
        with torch.no_grad():
            layer.adapters[name].lora_b.normal_()
    assert layer.bias.abs().min() > 0
    return layer.to(dtype)


@pytest.mark.parametrize("active", ["a", None, "unknown", (("b", 2), (None, 1), ("unknown", 1), ("a", 1))])
def test_folded_layer_computes_the_formula_with_its_bias(active):
    layer = layer_with_adapters()
    x = torch.randn(5, 8)
    groups = ((active, 5),) if active is None or isinstance(active, str) else active
    expected, start = [], 0
    for name, n in groups:
        weight = layer.weight
        if name in layer.adapters:
            weight = weight + layer.adapters[name].delta_weight()
        expected.append(x[start : start + n] @ weight.T + layer.bias)
        start += n
    with torch.no_grad():
        fold_adapters(layer)
        with use_adapter([layer], active):
            torch.testing.assert_close(layer(x), torch.cat(expected), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_row_groups_keep_the_layers_dtype(dtype):
    # A model held in bfloat16 (or float64) computes in it: the row selection mixes in no float32.
    layer = layer_with_adapters(dtype)
    x = torch.randn(3, 8, dtype=dtype)
    with torch.no_grad(), use_adapter([layer], (("a", 1), (None, 1), ("b", 1))):
        out = layer(x)
    assert out.dtype == dtype
    with torch.no_grad(), use_adapter([layer], "a"):
        torch.testing.assert_close(out[:1], layer(x[:1]))


def test_targets_deep_inside_a_block_are_wrapped_in_place():
    block = nn.Module()
    block.act = nn.Module()
    block.act.fc = nn.ReLU()  # named like the target but no Linear: passed over
    block.outer = nn.Module()
    block.outer.inner = nn.Module()
    block.outer.inner.fc = nn.Linear(4, 4)
    block.fc = nn.Linear(4, 4)
    wrapped = inject_lora([block], ["fc"], ["a"], rank=1, alpha=1.0)
    assert isinstance(block.outer.inner.fc, LoRALinear) and isinstance(block.fc, LoRALinear)
    assert wrapped == [block.outer.inner.fc, block.fc] or wrapped == [block.fc, block.outer.inner.fc]
    assert "adapters=['a']" in repr(block.fc)
    deep = nn.Module()
    deep.outer = nn.Module()
    deep.outer.inner = nn.Module()
    deep.outer.inner.proj = nn.Linear(4, 4)
    with pytest.raises(LoRAError, match="the blocks' Linear layers are: proj[.] "):  # the last part of the name
        inject_lora([deep], ["nope"], ["a"], rank=1, alpha=1.0)


def test_merging_into_a_model_without_adapters_says_it_has_none():
    with pytest.raises(LoRAError, match="adapter 'rgb' not found; the model's adapters are: none$"):
        merge_adapter(nn.Sequential(nn.Linear(2, 2)), "rgb")


def test_a_new_layer_and_new_adapters_add_nothing_until_activated():
    base = nn.Linear(8, 4)
    layer = LoRALinear(base)
    layer.add_adapter("a", rank=2, alpha=4.0)
    with torch.no_grad():
        layer.adapters["a"].lora_b.normal_()
        x = torch.randn(3, 8)
        torch.testing.assert_close(layer(x), base(x))  # no adapter active yet


def test_adapters_have_no_dropout_unless_asked_for():
    torch.manual_seed(0)
    block = nn.Module()
    block.fc = nn.Linear(8, 4)
    inject_lora([block], ["fc"], ["a"], rank=2, alpha=4.0)  # dropout left at its default
    layer = block.fc
    standalone = LoRAAdapter(8, 4, rank=2, alpha=4.0).train()
    with torch.no_grad():
        for adapter in (layer.adapters["a"], standalone):
            adapter.lora_b.normal_()
    layer.train()
    x = torch.randn(64, 8)
    with torch.no_grad(), use_adapter([layer], "a"):
        adapter = layer.adapters["a"]
        expected = x @ layer.weight.T + layer.bias + 2.0 * (x @ adapter.lora_a.T) @ adapter.lora_b.T
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(standalone(x), 2.0 * (x @ standalone.lora_a.T) @ standalone.lora_b.T)


def test_dropout_asked_for_drops_adapter_inputs_in_training_only():
    torch.manual_seed(0)
    block = nn.Module()
    block.fc = nn.Linear(8, 4)
    layer = inject_lora([block], ["fc"], ["a"], rank=2, alpha=4.0, dropout=0.5)[0]
    with torch.no_grad():
        layer.adapters["a"].lora_b.normal_()
    x = torch.randn(64, 8)
    with torch.no_grad(), use_adapter([layer], "a"):
        layer.eval()
        adapter = layer.adapters["a"]
        expected = x @ layer.weight.T + layer.bias + 2.0 * (x @ adapter.lora_a.T) @ adapter.lora_b.T
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        layer.train()
        assert not torch.allclose(layer(x), expected, atol=1e-3)


def test_adapters_take_the_dtype_of_the_layer_they_are_added_to():
    layer = LoRALinear(nn.Linear(8, 4).to(torch.bfloat16))
    layer.add_adapter("a", rank=2, alpha=4.0)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    with torch.no_grad(), use_adapter([layer], "a"):
        assert layer(x).dtype == torch.bfloat16
