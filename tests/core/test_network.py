"""The attention U-Net: output shapes, every skip connection used, head swaps, strict backbone loading."""

from __future__ import annotations

import pytest
import torch

from napari_genselfdiff.core.errors import ModelFileError
from napari_genselfdiff.core.network import PRESETS, AttentionUNet, UNetConfig
from napari_genselfdiff.core.network.unet import HEAD_PREFIX

from conftest import micro_config


@pytest.fixture(scope="module")
def micro_classes() -> AttentionUNet:
    torch.manual_seed(0)
    return AttentionUNet(micro_config(out_channels=3)).eval()


@pytest.mark.parametrize("height, width", [(8, 8), (32, 32), (48, 80), (64, 24)])
def test_output_shape_matches_input_for_square_and_non_square_sizes(micro_classes, height, width):
    x = torch.randn(2, 3, height, width)
    with torch.inference_mode():
        out = micro_classes(x)
    assert out.shape == (2, 3, height, width)
    assert torch.isfinite(out).all()


def test_noise_head_predicts_image_shaped_noise_for_any_timestep():
    torch.manual_seed(0)
    model = AttentionUNet(micro_config(out_channels=3, head="noise")).eval()
    x = torch.randn(3, 3, 32, 40)
    with torch.inference_mode():
        out = model(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape


def test_sides_not_divisible_by_the_downsampling_factor_are_refused(micro_classes):
    assert micro_classes.config.downsample_factor == 8
    with pytest.raises(ValueError, match="multiples of 8"):
        micro_classes(torch.randn(1, 3, 36, 40))


def test_every_decoder_level_concatenates_its_skip():
    # Structure: each decoder level's first convolution takes [upsampled, skip] = 2 x width channels,
    # and the final block takes [decoder, stem] = 2 x widths[0] (the paper's code dropped one skip).
    config = PRESETS["tiny"]
    model = AttentionUNet(config)
    widths = config.widths
    for j, level in enumerate(model.decoder):
        width = widths[len(widths) - 1 - j]
        assert level.blocks[0].conv1.in_channels == 2 * width
        assert level.blocks[0].conv1.out_channels == width
    assert model.final.conv1.in_channels == 2 * widths[0]


def test_a_gradient_reaches_every_parameter_and_every_skip_half():
    torch.manual_seed(0)
    model = AttentionUNet(micro_config(out_channels=2))
    x = torch.randn(2, 3, 32, 32)
    loss = model(x, torch.tensor([0, 5])).square().mean()
    loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    # The input channels of the skip half ([h, skip] -> second half) must carry gradient: the skip
    # feeds the output, not just the channel count.
    for j, level in enumerate(model.decoder):
        weight_grad = level.blocks[0].conv1.weight.grad
        half = weight_grad.shape[1] // 2
        assert weight_grad[:, half:].abs().sum() > 0, f"decoder level {j}: skip unused"
        assert weight_grad[:, :half].abs().sum() > 0, f"decoder level {j}: upsampled path unused"
    stem_half = model.final.conv1.weight.grad[:, model.config.widths[0]:]
    assert stem_half.abs().sum() > 0


def test_head_swap_keeps_every_backbone_weight_and_reinitialises_the_head():
    torch.manual_seed(0)
    noise = AttentionUNet(micro_config(out_channels=3, head="noise"))
    before = {k: v.clone() for k, v in noise.state_dict().items()}
    torch.manual_seed(1)
    seg = noise.with_new_head("classes", 4)
    assert seg.config.head == "classes" and seg.config.out_channels == 4
    assert seg.head.weight.shape[0] == 4
    backbone = seg.backbone_state_dict()
    assert set(backbone) == set(noise.backbone_state_dict())
    assert all(torch.equal(backbone[k], before[k]) for k in backbone)
    assert all(torch.equal(v, before[k]) for k, v in noise.state_dict().items())  # the source is untouched

    # Same head size: the new head must still be fresh, not a copy of the old one.
    torch.manual_seed(2)
    again = seg.with_new_head("classes", 4)
    assert not torch.equal(again.head.weight, seg.head.weight)
    assert all(torch.equal(again.state_dict()[k], seg.state_dict()[k]) for k in backbone)


def _state():
    torch.manual_seed(0)
    return AttentionUNet(micro_config(out_channels=3, head="noise")).state_dict()


def test_load_backbone_names_a_missing_key():
    model = AttentionUNet(micro_config())
    state = _state()
    del state["mid_attention.qkv.weight"]
    with pytest.raises(ModelFileError, match="missing: mid_attention.qkv.weight"):
        model.load_backbone(state)


def test_load_backbone_names_an_unexpected_key():
    model = AttentionUNet(micro_config())
    state = _state()
    state["encoder.9.extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelFileError, match="unexpected: encoder.9.extra.weight"):
        model.load_backbone(state)


def test_load_backbone_names_a_mis_shaped_key():
    model = AttentionUNet(micro_config())
    state = _state()
    state["stem.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(ModelFileError, match="another shape: stem.weight"):
        model.load_backbone(state)


def test_load_backbone_of_another_size_is_refused_and_leaves_the_model_unchanged():
    model = AttentionUNet(micro_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelFileError, match="same size"):
        model.load_backbone(AttentionUNet(PRESETS["tiny"]).state_dict())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_load_backbone_ignores_the_source_head():
    model = AttentionUNet(micro_config(out_channels=5))
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(HEAD_PREFIX)}
    model.load_backbone(_state())  # a 3-channel noise head in the source
    assert all(torch.equal(model.state_dict()[k], v) for k, v in head.items())


def test_config_validation_messages():
    with pytest.raises(ValueError, match="divisible by groups"):
        UNetConfig(widths=(12, 24), groups=8)
    with pytest.raises(ValueError, match="at least 2 classes"):
        UNetConfig(head="classes", out_channels=1)
    assert UNetConfig.from_dict(PRESETS["small"].to_dict()) == PRESETS["small"]


def test_stem_stride_2_with_batchnorm_gives_one_output_per_input_pixel_and_trains():
    cfg = UNetConfig(widths=(8, 16, 16, 32), blocks_per_level=1, groups=4, attention_heads=2, attention_dim_head=8,
                     head="classes", out_channels=2, norm="batch", stem_stride=2)
    assert cfg.downsample_factor == 16
    torch.manual_seed(0)
    model = AttentionUNet(cfg)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 4 for m in model.modules())
    x = torch.randn(2, 3, 32, 48)
    out = model(x)
    assert out.shape == (2, 2, 32, 48)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # The full-resolution path sees the input image itself: a one-pixel change changes that pixel's output.
    model.eval()
    with torch.inference_mode():
        x2 = x.clone()
        x2[0, :, 5, 7] += 1.0
        diff = (model(x2) - model(x)).abs().sum(dim=1)[0]
    assert diff[5, 7] > 0
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, 3, 24, 24))


def test_unknown_norm_and_stem_stride_are_refused():
    with pytest.raises(ValueError, match="norm"):
        UNetConfig(norm="layer")
    with pytest.raises(ValueError, match="stem_stride"):
        UNetConfig(stem_stride=4)


def test_batchnorm_folded_for_inference_gives_the_same_logits_in_fp32():
    from napari_genselfdiff.core.network.unet import fused_for_inference

    cfg = UNetConfig(widths=(8, 16, 16, 32), blocks_per_level=1, groups=4, attention_heads=2, attention_dim_head=8,
                     head="classes", out_channels=2, norm="batch", stem_stride=2)
    torch.manual_seed(0)
    model = AttentionUNet(cfg).train()
    with torch.no_grad():  # a few batches give the running statistics non-trivial values
        for _ in range(3):
            model(torch.randn(2, 3, 32, 32) * 2 + 0.5)
    model.eval()
    fused = fused_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 48, 32)
    with torch.inference_mode():  # fp32 on every CPU: folding changes only float rounding
        assert torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)
    # the fused copy is kept while the weights stay as they are, and made again when they change
    assert fused_for_inference(model) is fused
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    optimizer.step()  # new weights (and running statistics) in place
    model.eval()
    refused = fused_for_inference(model)
    assert refused is not fused
    with torch.inference_mode():
        assert torch.allclose(refused(x), model(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        model.stem.weight.mul_(0.5)  # a change by hand
    assert fused_for_inference(model) is not refused
