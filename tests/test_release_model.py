"""The released code's model as configuration: every structural piece builds, trains, and is what the
release does (checked against the release's own maths written out here, on the tiny model)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import fill_adapters, make_tiny_config, random_clip
from velora.config import RELEASE_INPUTS, RELEASE_MODEL, ConfigError, load_config
from velora.info import describe
from velora.model.fusion import bottleneck
from velora.model.velora import AttentionHead, VELoRA

RELEASE = dict(
    RELEASE_MODEL, high_level_blocks=1, backbone_args={"embed_dim": 32, "depth": 3, "num_heads": 2, "num_classes": 24}
)


def release_model(**model) -> VELoRA:
    return VELoRA.from_config(make_tiny_config(model={**RELEASE, **model}))


def test_the_shipped_release_configs_are_the_release_fields():
    for name in ("pokerevent_vitb16_release", "hardvs_vitb16_release"):
        cfg = load_config(name)
        assert {k: getattr(cfg.model, k) for k in RELEASE_MODEL} == RELEASE_MODEL
        for section, fields in RELEASE_INPUTS.items():
            assert {k: getattr(getattr(cfg, section), k) for k in fields} == fields
        default = load_config(name.removesuffix("_release"))
        release_data = dataclasses.replace(default.data, **RELEASE_INPUTS["data"])
        assert cfg.lora == default.lora and cfg.data == release_data  # the same task and recipe
        assert cfg.train.lr == default.train.lr and cfg.train.epochs == default.train.epochs


def test_velora_info_prints_the_release_count_beside_the_default():
    text = describe(load_config("pokerevent_vitb16_release"))
    line = next(line for line in text.splitlines() if line.startswith("the same task, trainable"))
    assert "velora's default model 1,824,114" in line and "the released code's model 18,326,898" in line


def test_release_structure_all_blocks_then_projection_then_embeddings():
    model = release_model().eval()
    with torch.no_grad():
        model.stream_embed["rgb"].normal_()  # learned embeddings start at zero: give it a value that shows
    assert model.num_low == 3 and model.backbone.head.out_features == 24  # all blocks, then D -> 24 -> D
    assert not any(p.requires_grad for p in model.backbone.head.parameters())
    assert set(model.stream_embed) == {"rgb", "event", "diff"}
    assert model.trainable_state_dict()["stream_embed.rgb"].shape == (1, 1, 32)  # as adapter files store it
    # The head flattens the last min(10, N) tokens: all 5 here (2 x 2 patches + the class token).
    assert model.head.tokens == 5 and model.head.fc.in_features == 5 * 32
    # Per frame: ln_post, then the projection (as CLIP's encode_image); then the mean over frames,
    # then the Linear back to the width and the stream's embedding.
    frames = torch.randn(2, 3, 5, 32)  # (B, T, N, D) after the blocks
    per_frame = model.project_frames(frames.flatten(0, 1)).view(2, 3, 5, 24)
    by_hand = model.backbone.head(model.backbone.norm(frames)).mean(dim=1)
    assert torch.allclose(per_frame.mean(dim=1), by_hand, atol=1e-6)
    assert torch.equal(
        model.project_streams({"rgb": by_hand})["rgb"], model.project(by_hand) + model.stream_embed["rgb"]
    )


def test_the_final_block_runs_again_with_its_stream_adapter_plus_the_bottleneck():
    model = release_model().eval()
    fill_adapters(model, seed=1)
    block = model.backbone.blocks[-1]
    tokens, fused_part = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    out = model.fusion.final_block(block, "rgb", tokens) + model.fusion.shared(0, block, "rgb", fused_part)
    # By hand: the block with the "rgb" LoRA active (scaled alpha/r), then fused + the unscaled
    # fc1/fc2 bottleneck of the same adapters, QuickGELU between (the release's c_fc, gelu, c_proj).
    a1, b1 = block.mlp.fc1.adapters["rgb"].lora_a, block.mlp.fc1.adapters["rgb"].lora_b
    a2, b2 = block.mlp.fc2.adapters["rgb"].lora_a, block.mlp.fc2.adapters["rgb"].lora_b
    scale = 4.0 / 2
    x = tokens + block.attn(block.norm1(tokens))
    h = block.norm2(x)
    h = F.linear(h, block.mlp.fc1.weight, block.mlp.fc1.bias) + scale * h @ a1.T @ b1.T
    h = h * torch.sigmoid(1.702 * h)
    h = F.linear(h, block.mlp.fc2.weight, block.mlp.fc2.bias) + scale * h @ a2.T @ b2.T
    g = fused_part @ a1.T @ b1.T
    g = g * torch.sigmoid(1.702 * g)
    expected = (x + h) + fused_part + g @ a2.T @ b2.T
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(bottleneck(block, "rgb", fused_part), g @ a2.T @ b2.T, atol=1e-6)


def test_attention_head_as_released():
    head = AttentionHead(dim=8, num_classes=3, tokens=2)
    rgb, event = torch.randn(2, 3, 8), torch.randn(2, 3, 8)  # 2N = 6 tokens, D = 8: scaled by sqrt(D)
    x = torch.cat([rgb, event], dim=1)
    weights = torch.softmax(head.query(x) @ head.key(x).transpose(1, 2) / math.sqrt(8), dim=-1)
    attended = weights @ head.value(x)
    summed = attended[:, :3] + attended[:, 3:]
    absent = torch.zeros(8), torch.zeros(8)
    assert torch.allclose(head(rgb, event, *absent), head.fc(summed[:, -2:].flatten(1)), atol=1e-6)
    # A missing modality's tokens are its absent embedding, repeated.
    absent_rgb = torch.randn(8)
    expected = head(absent_rgb.expand(2, 3, 8), event, *absent)
    assert torch.allclose(head(None, event, absent_rgb, absent[1]), expected, atol=1e-6)


def test_release_blocks_are_built_as_the_release_builds_them():
    model = release_model()
    fusion, decoder = model.fusion.blocks[0], model.recon_decoder[0]
    for block in (fusion, decoder):
        assert block.attn.qkv.bias is not None and block.norm1.eps == 1e-6
        assert block.drop_path1.drop_prob == pytest.approx(0.1)
    assert model.recon_decoder[1].eps == 1e-6
    # Linear weights truncated-normal with std 0.02 (timm's default std would be 1), biases zero.
    weights = torch.cat([m.weight.flatten() for m in fusion.modules() if isinstance(m, torch.nn.Linear)])
    assert 0.018 < weights.std().item() < 0.022
    assert not any(m.bias.any() for m in fusion.modules() if isinstance(m, torch.nn.Linear))
    default = VELoRA.from_config(make_tiny_config(model={"fusion_block": "random_trainable", "recon_decoder": "block"}))
    assert default.recon_decoder[1].eps == 1e-5  # timm's blocks: torch's LayerNorm default
    block = default.fusion.blocks[0]
    assert block.attn.qkv.bias is None and isinstance(block.drop_path1, torch.nn.Identity)


@pytest.mark.parametrize("given", ["both", "rgb", "event"])
def test_the_release_model_trains_with_gradients_on_exactly_its_trainable_parts(given):
    model = release_model(modality_dropout=0.2).train()
    rgb = random_clip(2, 3, 32, seed=1) if given != "event" else None
    events = random_clip(2, 3, 32, seed=2) if given != "rgb" else None
    out = model(rgb, events)
    assert out.logits.shape == (2, 8)
    (F.cross_entropy(out.logits, torch.tensor([1, 2])) + out.recon_loss).backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
    assert model.project.weight.grad is not None and model.head.fc.weight.grad is not None
    if given == "both":
        assert out.recon_loss.item() > 0 and model.fusion.blocks[0].attn.qkv.weight.grad is not None


def test_release_counts_exceed_the_default_and_bottleneck_needs_its_adapters():
    default = sum(p.numel() for p in VELoRA.from_config(make_tiny_config()).parameters() if p.requires_grad)
    release = sum(p.numel() for p in release_model().parameters() if p.requires_grad)
    assert release > 5 * default
    with pytest.raises(ConfigError, match="mlp_bottleneck uses the final block's own fc1 and fc2"):
        make_tiny_config(model={"shared_lora": "mlp_bottleneck"})
    with pytest.raises(ConfigError, match="mlp_bottleneck"):
        make_tiny_config("lora.targets=[qkv]", model={**RELEASE})


def test_data_modalities_must_be_the_models():
    cfg = make_tiny_config(data={"modalities": ["event"]})
    assert cfg.model.modalities == ["event"], "an empty model.modalities follows the data (older configs)"
    with pytest.raises(ConfigError, match="no adapters for"):
        make_tiny_config(model={"modalities": ["rgb"]}, data={"modalities": ["rgb", "event"]})


def test_the_release_fusion_runs_each_final_block_with_its_own_streams_adapter():
    from velora.model.fusion import StreamTokens
    from velora.model.lora import lora_layers, use_adapter

    model = release_model().eval()
    fill_adapters(model, seed=3)
    block = model.backbone.blocks[-1]
    torch.manual_seed(0)
    streams = StreamTokens(diff=torch.randn(2, 5, 32), rgb=torch.randn(2, 5, 32), event=torch.randn(2, 5, 32))
    with torch.no_grad():
        out = model.fusion(streams)
        fused, where = streams.fused()
        fused = model.fusion.blocks[0](fused)  # the random, trainable fusion block
        for stream in ("rgb", "event"):
            with use_adapter(lora_layers(block), stream):  # the final block runs again with the stream's LoRA
                expected = block(getattr(streams, stream))
            part = fused[:, where[stream]]
            expected = expected + part + bottleneck(block, stream, part)
            torch.testing.assert_close(getattr(out, stream), expected)


@pytest.mark.parametrize("head", ["attention", "linear"])
def test_model_head_dropout_reaches_the_head(head):
    model = (
        release_model(head_dropout=0.3)
        if head == "attention"
        else VELoRA.from_config(make_tiny_config(model={"head_dropout": 0.3}))
    )
    assert model.head.drop.p == pytest.approx(0.3)


@pytest.mark.parametrize("recon_weight", [0.0, 0.5, 2.0])
def test_the_loss_is_cross_entropy_plus_recon_weight_times_the_reconstruction_loss(recon_weight):
    from velora.model.velora import VELoRAOutput

    model = VELoRA.from_config(make_tiny_config(model={"recon_weight": recon_weight}))
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    recon = torch.tensor(0.75)
    loss = model.loss(VELoRAOutput(logits=logits, recon_loss=recon), labels)
    ce = -(torch.log_softmax(logits, dim=-1)[[0, 1], [0, 2]]).mean()
    torch.testing.assert_close(loss.ce, ce)
    torch.testing.assert_close(loss.total, ce + recon_weight * 0.75)
    assert loss.recon is recon
