"""VELoRA model contracts: streams, one batched backbone call per stream, frozen weights, gradients."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from conftest import fill_adapters, random_clip
from velora.bench.reference import OriginalStyleVELoRA
from velora.model.fusion import StreamTokens
from velora.model.lora import lora_layers, use_adapter
from velora.model.velora import VELoRA, count_parameters
from velora.training.schedule import decay_groups


def build(cfg, seed: int = 0) -> VELoRA:
    torch.manual_seed(seed)
    return VELoRA.from_config(cfg)


def count_patch_embed_calls(model: VELoRA, rgb, events) -> list[tuple[int, ...]]:
    """Input shapes of every backbone.patch_embed call during one forward pass."""
    shapes = []
    handle = model.backbone.patch_embed.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            model(rgb, events)
    finally:
        handle.remove()
    return shapes


# ---------------------------------------------------------------- streams and shapes
@pytest.mark.parametrize("modalities", [["rgb", "event"], ["rgb"], ["event"]])
def test_forward_shapes_for_every_stream_combination(tiny_config, modalities):
    model = build(tiny_config(data={"modalities": modalities})).eval()
    B = 2
    clips = random_clip(B, 3)
    combos = {
        ("rgb", "event"): [(clips, clips), (clips, None), (None, clips)],
        ("rgb",): [(clips, None)],
        ("event",): [(None, clips)],
    }[tuple(modalities)]
    for rgb, events in combos:
        out = model(rgb, events)
        assert out.logits.shape == (B, 8)
        assert torch.isfinite(out.logits).all()
        assert out.recon_loss.shape == ()
        if rgb is None or events is None:
            assert out.recon_loss.item() == 0.0, "no reconstruction without both modalities"
        else:
            assert out.recon_loss.item() > 0.0


def test_float_frames_in_unit_range_equal_uint8_frames(tiny_config):
    model = build(tiny_config()).eval()
    clips = random_clip(2, 3)
    with torch.no_grad():
        a = model(clips, clips).logits
        b = model(clips.float() / 255, clips.float() / 255).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "modalities, given, match",
    [
        (
            ["rgb"],
            "events",
            "^this model was trained on rgb only and has no event adapters; leave event out \\(model.modalities\\)$",
        ),
        (["event"], "rgb", "^this model was trained on event only and has no rgb adapters; leave rgb out"),
    ],
)
def test_modality_the_model_was_not_built_for_raises(tiny_config, modalities, given, match):
    model = build(tiny_config(data={"modalities": modalities})).eval()
    clips = random_clip(1, 3)
    kwargs = {"rgb": clips, "events": clips}
    with pytest.raises(ValueError, match=match):
        model(**kwargs)
    with pytest.raises(ValueError, match=match):
        model(**{given: clips})


def test_no_modality_raises(tiny_config):
    model = build(tiny_config()).eval()
    with pytest.raises(ValueError, match="^VELoRA needs at least one modality: pass rgb, events or both$"):
        model(None, None)


def test_normalisation_constants_are_not_saved_with_the_model(tiny_config):
    # They come from the config (model.normalization) and the weights, not from a checkpoint.
    model = build(tiny_config())
    assert {"mean", "std"} <= {name for name, _ in model.named_buffers()}
    assert not {"mean", "std"} & set(model.state_dict())


def test_finetune_backbone_trains_every_backbone_weight(tiny_config):
    model = build(tiny_config(model={"finetune_backbone": True}))
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if ".adapters." in n)


def test_high_level_blocks_may_be_all_blocks_on_the_released_path_only(tiny_config):
    released = {
        "stream_path": "all_blocks_projected",
        "backbone_args": {"embed_dim": 32, "depth": 3, "num_heads": 2, "num_classes": 24},
    }
    model = build(tiny_config(model={**released, "high_level_blocks": 3}))
    assert model.num_low == 3 and len(model.fusion.final_blocks) == 3
    with pytest.raises(ValueError, match="^model.high_level_blocks = 4, but the backbone has 3 blocks$"):
        build(tiny_config(model={**released, "high_level_blocks": 4}))


@pytest.mark.parametrize("B, T", [(1, 2), (3, 4)])
def test_all_streams_share_one_batched_backbone_call(tiny_config, B, T):
    clips = random_clip(B, T)
    model = build(tiny_config()).eval()
    # rgb, event, frame difference: every frame of every stream in one call of B*(T+T+T-1) images.
    assert count_patch_embed_calls(model, clips, clips) == [(B * (3 * T - 1), 3, 32, 32)]
    assert count_patch_embed_calls(model, clips, None) == [(B * (2 * T - 1), 3, 32, 32)]  # rgb + diff
    no_diff = build(tiny_config(model={"frame_diff": False})).eval()
    assert count_patch_embed_calls(no_diff, clips, clips) == [(2 * B * T, 3, 32, 32)]
    assert count_patch_embed_calls(no_diff, None, clips) == [(B * T, 3, 32, 32)]


def test_one_call_equals_each_stream_alone_with_its_adapter(tiny_config):
    model = build(tiny_config()).eval()
    fill_adapters(model, seed=5)
    rgb, events = random_clip(2, 3, seed=1), random_clip(2, 3, seed=2)
    streams = {"rgb": model.normalize(rgb), "event": model.normalize(events)}
    streams["diff"] = sum(model.frame_difference(f) for f in streams.values())
    with torch.no_grad():
        together = model.encode_low(streams)
        for name, frames in streams.items():
            alone = model.encode_low({name: frames})[name]
            torch.testing.assert_close(together[name], alone, atol=1e-5, rtol=1e-5)
        # and the adapters differ, so a row given the wrong adapter would show
        assert not torch.allclose(model.encode_low({"event": streams["rgb"]})["event"], together["rgb"])


def test_single_frame_clips_skip_the_difference_stream(tiny_config):
    model = build(tiny_config()).eval()
    clips = random_clip(2, 1)
    assert count_patch_embed_calls(model, clips, clips) == [(4, 3, 32, 32)]
    logits = model(clips, clips).logits
    assert logits.shape == (2, 8) and torch.isfinite(logits).all()  # no stream of zero frames averaged


@pytest.mark.parametrize(
    "normalization, mean, std",
    [
        ("weights", (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),  # CLIP's
        ("half", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ],
)
def test_normalize_by_hand(tiny_config, normalization, mean, std):
    model = build(tiny_config(model={"normalization": normalization}))
    clips = random_clip(2, 3)
    mean, std = torch.tensor(mean).view(1, 1, 3, 1, 1), torch.tensor(std).view(1, 1, 3, 1, 1)
    expected = (clips.float() / 255 - mean) / std
    torch.testing.assert_close(model.normalize(clips), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.normalize(clips.float() / 255), expected, atol=1e-5, rtol=1e-5)


def test_frame_difference_by_hand():
    frames = torch.tensor([1.0, 4.0, 2.0, 2.0]).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    diff = VELoRA.frame_difference(frames)
    assert diff.shape == (1, 3, 3, 2, 2)
    assert diff[0, :, 0, 0, 0].tolist() == [3.0, 2.0, 0.0]


def test_difference_stream_input_is_rgb_diff_plus_event_diff(tiny_config):
    model = build(tiny_config()).eval()
    rgb, events = random_clip(2, 3, seed=1), random_clip(2, 3, seed=2)
    inputs = []
    handle = model.backbone.patch_embed.register_forward_hook(lambda m, args, out: inputs.append(args[0].clone()))
    with torch.no_grad():
        model(rgb, events)
    handle.remove()
    std = model.std.view(1, 1, 3, 1, 1)
    scaled_rgb, scaled_events = rgb.float() / 255 / std, events.float() / 255 / std
    expected = (scaled_rgb[:, 1:] - scaled_rgb[:, :-1]).abs() + (scaled_events[:, 1:] - scaled_events[:, :-1]).abs()
    torch.testing.assert_close(inputs[0][2 * 2 * 3 :], expected.flatten(0, 1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- frozen backbone, gradients
def test_backbone_is_frozen_and_stays_in_eval_mode(tiny_config):
    model = build(tiny_config(model={"fusion_block": "random_trainable"}))
    model.train()
    for name, p in model.backbone.named_parameters():
        assert p.requires_grad == (".adapters." in name), name
    assert not model.backbone.training
    assert all(layer.adapters.training for layer in lora_layers(model.backbone))
    assert model.head.training and model.fusion.blocks.training
    model.eval()
    assert not any(layer.adapters.training for layer in lora_layers(model.backbone))


def test_frozen_weights_are_bit_identical_after_an_optimizer_step(tiny_config):
    model = build(tiny_config("lora.dropout=0.1")).train()
    fill_adapters(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert frozen and trainable
    optimizer = torch.optim.AdamW(decay_groups(model, weight_decay=0.5), lr=1e-2)
    clips = random_clip(2, 3)
    out = model(clips, clips)
    loss = F.cross_entropy(out.logits, torch.tensor([1, 5])) + out.recon_loss
    assert loss.item() > 0
    loss.backward()
    optimizer.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
            assert p.grad is None, f"frozen {n} got a gradient"
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    changed = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert set(changed) == set(trainable), f"not updated: {sorted(set(trainable) - set(changed))}"


GRADIENT_VARIANTS = {
    "default": {},
    "random_trainable_fusion": {"model": {"fusion_block": "random_trainable"}},
    "block_decoder": {"model": {"recon_decoder": "block"}},
    "no_recon": {"model": {"recon_weight": 0.0}},
    "two_high_level_blocks": {"model": {"high_level_blocks": 2}},
    "cls_pool": {"model": {"head_pool": "cls"}},
    "no_frame_diff": {"model": {"frame_diff": False}},
    "attention_targets": {"lora": {"targets": ["qkv", "proj"]}},
    "linear_probe": {"lora": {"rank": 0}},
    "linear_probe_random_fusion": {"lora": {"rank": 0}, "model": {"fusion_block": "random_trainable"}},
    "rgb_only": {"data": {"modalities": ["rgb"]}},
    "event_only": {"data": {"modalities": ["event"]}},
}


@pytest.mark.parametrize("variant", list(GRADIENT_VARIANTS))
def test_gradients_reach_exactly_the_trainable_parameters(tiny_config, variant):
    cfg = tiny_config(**GRADIENT_VARIANTS[variant])
    model = build(cfg).train()
    fill_adapters(model)  # non-zero B: gradients then flow through every adapter path
    clips = random_clip(2, 3)
    rgb = clips if "rgb" in cfg.data.modalities else None
    events = clips if "event" in cfg.data.modalities else None
    out = model(rgb, events)
    (F.cross_entropy(out.logits, torch.tensor([0, 3])) + cfg.model.recon_weight * out.recon_loss).backward()

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(model.trainable_state_dict()) == trainable
    assert {"head.weight", "head.bias"} <= trainable
    no_grad = sorted(n for n, p in model.named_parameters() if p.requires_grad and p.grad is None)
    zero_grad = sorted(
        n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None and not p.grad.any()
    )
    stray = sorted(n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None)
    assert not no_grad, f"trainable parameters that no gradient reaches: {no_grad}"
    assert not zero_grad, f"trainable parameters with an all-zero gradient: {zero_grad}"
    assert not stray, f"frozen parameters with a gradient: {stray}"


def test_absent_embeddings_learn_only_when_a_modality_can_be_missing(tiny_config):
    both = build(tiny_config()).train()
    assert not both.absent_rgb.requires_grad and not both.absent_event.requires_grad
    dropout = build(tiny_config(model={"modality_dropout": 0.3})).train()
    assert dropout.absent_rgb.requires_grad and dropout.absent_event.requires_grad
    clips = random_clip(2, 3)
    F.cross_entropy(dropout(None, clips).logits, torch.tensor([0, 1])).backward()
    assert dropout.absent_rgb.grad is not None and dropout.absent_rgb.grad.any()
    assert dropout.absent_event.grad is None


def test_trainable_state_dict_holds_no_backbone_weights(tiny_config):
    model = build(tiny_config())
    keys = set(model.trainable_state_dict())
    backbone_keys = [k for k in keys if k.startswith("backbone.") and ".adapters." not in k]
    assert not backbone_keys
    assert any(".adapters.rgb." in k for k in keys) and any(".adapters.event." in k for k in keys)
    assert any(".adapters.diff." in k for k in keys) and any(".adapters.fusion." in k for k in keys)
    assert any(k.startswith("fusion.shared_rgb.") for k in keys) and any(
        k.startswith("fusion.shared_event.") for k in keys
    )
    groups = model.parameter_groups()
    assert sum(groups.values()) == count_parameters(model)[1]
    assert {"lora_rgb", "lora_event", "lora_diff", "lora_fusion", "head"} <= set(groups)


@pytest.mark.parametrize("fusion_block", ["backbone_lora", "random_trainable"])
def test_parameter_groups_by_hand(tiny_config, fusion_block):
    # The tiny model: D = 32, MLP 128, rank 2 on fc1 (32 -> 128) and fc2 (128 -> 32), 2 low-level
    # blocks and 1 high-level block, 8 classes. An adapter on a Linear in -> out holds r (in + out).
    model = build(tiny_config(model={"fusion_block": fusion_block}))
    per_block = 2 * (32 + 128) + 2 * (128 + 32)  # fc1 and fc2
    expected = {
        "lora_rgb": 2 * per_block,
        "lora_event": 2 * per_block,
        "lora_diff": 2 * per_block,
        "shared_rgb": 2 * (32 + 32),
        "shared_event": 2 * (32 + 32),  # one D -> D adapter per high-level block
        "recon_decoder": 2 * 32 + 32 * 32 + 32,  # LayerNorm, Linear
        "head": 2 * 32 * 8 + 8,
    }
    if fusion_block == "backbone_lora":
        expected["lora_fusion"] = per_block
    else:  # a trainable ViT block: 2 LayerNorms, qkv, proj, fc1, fc2
        expected["fusion_blocks"] = (
            2 * 2 * 32 + 32 * 96 + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32)
        )  # qkv without bias (timm)
    assert model.parameter_groups() == expected


def test_fused_tokens_are_diff_rgb_event_in_that_order():
    diff, rgb, event = torch.zeros(1, 2, 4), torch.ones(1, 3, 4), torch.full((1, 1, 4), 2.0)
    fused, where = StreamTokens(diff=diff, rgb=rgb, event=event).fused()
    assert where == {"diff": slice(0, 2), "rgb": slice(2, 5), "event": slice(5, 6)}
    assert fused[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2]
    fused, where = StreamTokens(diff=None, rgb=None, event=event).fused()
    assert where == {"event": slice(0, 1)} and torch.equal(fused, event)


@pytest.mark.parametrize("streams", ["diff_rgb_event", "rgb_event", "rgb", "event"])
def test_high_level_fusion_by_hand(tiny_config, streams):
    # One high-level block (the backbone's last): fused = block with LoRA "fusion" ([diff; rgb;
    # event]); each stream = the block without adapter (its own tokens) + its M-shared adapter
    # applied to its own part of the fused tokens.
    model = build(tiny_config()).eval()
    fill_adapters(model, seed=6)
    g = torch.Generator().manual_seed(1)
    tokens = {
        name: torch.randn(2, 5, 32, generator=g) if name in streams else None for name in ("diff", "rgb", "event")
    }
    block = model.backbone.blocks[-1]
    layers = lora_layers(block)
    with torch.no_grad():
        out = model.fusion(StreamTokens(**tokens))
        present = [tokens[name] for name in ("diff", "rgb", "event") if tokens[name] is not None]
        with use_adapter(layers, "fusion"):
            fused = block(torch.cat(present, dim=1))
        start = 5 if tokens["diff"] is not None else 0
        for name, shared in (("rgb", model.fusion.shared_rgb), ("event", model.fusion.shared_event)):
            if tokens[name] is None:
                assert getattr(out, name) is None
                continue
            with use_adapter(layers, None):
                own = block(tokens[name])
            adapter = shared[0]
            part = fused[:, start : start + 5]
            expected = own + adapter.scale * part @ adapter.lora_a.T @ adapter.lora_b.T
            torch.testing.assert_close(getattr(out, name), expected, atol=1e-5, rtol=1e-5)
            start += 5
    assert out.diff is None


# ---------------------------------------------------------------- backbone held once
def test_backbone_is_held_once_and_original_style_gives_the_same_logits(tiny_config):
    cfg = tiny_config()
    plain = timm.create_model(cfg.model.backbone, num_classes=0, img_size=32, **cfg.model.backbone_args)
    backbone_params = sum(p.numel() for p in plain.parameters())

    def frozen_backbone_params(m) -> int:  # the frozen absent_* embeddings are not backbone weights
        return sum(p.numel() for n, p in m.named_parameters() if not p.requires_grad and not n.startswith("absent_"))

    model = build(cfg).eval()
    original = OriginalStyleVELoRA.from_config(cfg).eval()
    assert frozen_backbone_params(model) == backbone_params
    assert frozen_backbone_params(original) == 3 * backbone_params

    # Same maths: non-zero adapters, copied into all three backbones of the original-style model.
    fill_adapters(original, seed=7)
    for copy_ in (original.event_backbone, original.diff_backbone):
        copy_.load_state_dict(original.backbone.state_dict())
    missing, unexpected = model.load_state_dict(original.state_dict(), strict=False)
    assert not missing
    assert all(k.startswith(("event_backbone.", "diff_backbone.")) for k in unexpected)

    rgb, events = random_clip(2, 3, seed=3), random_clip(2, 3, seed=4)
    with torch.no_grad():
        ours = model(rgb, events)
        theirs = original(rgb, events)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.recon_loss, theirs.recon_loss, atol=1e-5, rtol=1e-4)
    # The original style calls its RGB backbone once per image (the diff stream has its own copy).
    assert count_patch_embed_calls(original, rgb, None) == [(1, 3, 32, 32)] * (2 * 3)


# ---------------------------------------------------------------- config variants
def test_random_trainable_fusion_blocks(tiny_config):
    model = build(tiny_config(model={"fusion_block": "random_trainable", "high_level_blocks": 2}))
    assert len(model.fusion.blocks) == 2
    assert all(isinstance(b, Block) for b in model.fusion.blocks)
    assert all(p.requires_grad for p in model.fusion.blocks.parameters())
    assert "fusion" not in {name for layer in lora_layers(model) for name in layer.adapters}
    assert model(random_clip(), random_clip()).logits.shape == (2, 8)


def test_block_reconstruction_decoder(tiny_config):
    model = build(tiny_config(model={"recon_decoder": "block"}))
    assert isinstance(model.recon_decoder[0], Block)
    assert model(random_clip(), random_clip()).recon_loss.item() > 0


def test_recon_weight_zero_has_no_decoder_and_zero_loss(tiny_config):
    model = build(tiny_config(model={"recon_weight": 0.0}))
    assert model.recon_decoder is None
    assert not any(n.startswith("recon_decoder") for n in model.trainable_state_dict())
    assert model(random_clip(), random_clip()).recon_loss.item() == 0.0


@pytest.mark.parametrize(
    "sections, expected",
    [
        ({}, {"head.weight", "head.bias"}),
        ({"model": {"modality_dropout": 0.2}}, {"head.weight", "head.bias", "absent_rgb", "absent_event"}),
        ({"data": {"modalities": ["event"]}}, {"head.weight", "head.bias", "absent_rgb"}),
    ],
)
def test_rank_zero_is_a_linear_probe(tiny_config, sections, expected):
    model = build(tiny_config("lora.rank=0", **sections))
    assert lora_layers(model) == []
    assert model.recon_decoder is None and model.fusion.shared_rgb is None and model.fusion.shared_event is None
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected


def test_rank_one_is_lora_and_lora_dropout_reaches_every_adapter(tiny_config):
    model = build(tiny_config("lora.rank=1", "lora.dropout=0.3"))
    adapters = [a for layer in lora_layers(model) for a in layer.adapters.values()]
    assert {name for layer in lora_layers(model) for name in layer.adapters} == {"rgb", "event", "diff", "fusion"}
    assert {a.lora_a.shape[0] for a in adapters} == {1}
    assert all(isinstance(a.dropout, torch.nn.Dropout) and a.dropout.p == 0.3 for a in adapters)
    assert model.fusion.shared_rgb is not None and model.recon_decoder is not None
    shared = [*model.fusion.shared_rgb, *model.fusion.shared_event]  # the M-shared adapters too
    assert all(isinstance(a.dropout, torch.nn.Dropout) and a.dropout.p == 0.3 for a in shared)


def test_two_high_level_blocks(tiny_config):
    model = build(tiny_config(model={"high_level_blocks": 2}))
    assert model.num_low == 1
    assert len(model.fusion.shared_rgb) == 2 and len(model.fusion.shared_event) == 2
    fusion = [n for n in model.trainable_state_dict() if ".adapters.fusion." in n]
    assert {n.split(".")[2] for n in fusion} == {"1", "2"}
    low = [n for n in model.trainable_state_dict() if ".adapters.rgb." in n]
    assert {n.split(".")[2] for n in low} == {"0"}
    assert model(random_clip(), random_clip()).logits.shape == (2, 8)


def test_head_pool_cls_and_mean(tiny_config):
    tokens = torch.randn(2, 5, 32)
    cls_model = build(tiny_config(model={"head_pool": "cls"})).eval()
    mean_model = build(tiny_config(model={"head_pool": "mean"})).eval()
    normed = cls_model.backbone.norm(tokens)
    torch.testing.assert_close(cls_model.head.pool(tokens), normed[:, 0])
    torch.testing.assert_close(mean_model.head.pool(tokens), normed.mean(dim=1))
    clips = random_clip()
    with torch.no_grad():
        assert not torch.allclose(cls_model(clips, clips).logits, mean_model(clips, clips).logits)


def test_each_modality_reconstructs_the_other(tiny_config):
    # recon_loss = MSE(decoder(event tokens), rgb tokens) + MSE(decoder(rgb tokens), event tokens),
    # on distinct RGB and event clips. The decoder is set to LayerNorm then the identity, so the
    # expected value is the formula written out, with LayerNorm computed by hand.
    model = build(tiny_config()).eval()
    fill_adapters(model, seed=2)  # the rgb and event adapters differ: so do the two streams' tokens
    norm, linear = model.recon_decoder
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.in_features))
        linear.bias.zero_()
    seen = {}
    handle = model.fusion.register_forward_pre_hook(lambda m, args: seen.update(tokens=args[0]))
    with torch.no_grad():
        out = model(random_clip(2, 3, seed=1), random_clip(2, 3, seed=2))
    handle.remove()
    rgb, event = seen["tokens"].rgb, seen["tokens"].event  # the low-level tokens the loss compares

    def decoder(x):  # LayerNorm with weight 1, bias 0 (as initialised), then the identity
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + norm.eps)

    def mse(a, b):
        return ((a - b) ** 2).mean()

    expected = mse(decoder(event), rgb) + mse(decoder(rgb), event)
    swapped = mse(decoder(rgb), rgb) + mse(decoder(event), event)  # each modality reconstructing itself
    assert abs(expected - swapped) > 0.01 * expected, "the clips do not tell the two pairings apart"
    torch.testing.assert_close(out.recon_loss, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("detach", [True, False])
def test_recon_detach_target_stops_gradients_through_the_target(tiny_config, detach):
    # With a zero decoder weight, decoder(x) does not depend on x: the only way the reconstruction
    # loss can reach the stream adapters is through the targets.
    model = build(tiny_config(model={"recon_detach_target": detach})).train()
    fill_adapters(model)
    with torch.no_grad():
        model.recon_decoder[1].weight.zero_()
    clips = random_clip()
    model(clips, clips).recon_loss.backward()
    stream_grads = [p.grad for n, p in model.named_parameters() if ".adapters.rgb." in n or ".adapters.event." in n]
    reached = any(g is not None and g.any() for g in stream_grads)
    assert reached == (not detach)
    assert model.recon_decoder[1].bias.grad.any()


def test_high_level_blocks_must_leave_a_low_level_block(tiny_config):
    with pytest.raises(
        ValueError,
        match=r"^model.high_level_blocks = 3 leaves no low-level block in a 3-block backbone; use at most 2$",
    ):
        VELoRA.from_config(tiny_config(model={"high_level_blocks": 3}))


def test_a_linear_probe_runs_the_high_level_blocks_on_each_stream_alone(tiny_config):
    # Without adapters nothing carries the fused tokens to the head: the final tokens are the frozen
    # top block applied to each modality's own tokens, nothing added.
    from velora.model.fusion import StreamTokens

    model = build(tiny_config("lora.rank=0")).eval()
    block = model.backbone.blocks[-1]
    torch.manual_seed(0)
    streams = StreamTokens(diff=None, rgb=torch.randn(2, 5, 32), event=torch.randn(2, 5, 32))
    with torch.no_grad():
        out = model.fusion(streams)
        torch.testing.assert_close(out.rgb, block(streams.rgb))
        torch.testing.assert_close(out.event, block(streams.event))
