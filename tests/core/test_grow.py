"""Growing a trained U-Net wider or deeper keeps its function (core/network/grow.py), and the grown
network then learns with its new channels. fp32 throughout; "exact" means equal up to float rounding."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from napari_genselfdiff.core.network import AttentionUNet
from napari_genselfdiff.core.network.grow import grow

from conftest import micro_config


def trained_like(config) -> AttentionUNet:
    """A network with non-trivial batch-norm statistics and weights (a few train-mode passes)."""
    torch.manual_seed(0)
    net = AttentionUNet(config)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 3, 32, 32))
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def batch_norm_net() -> AttentionUNet:
    return trained_like(replace(micro_config(out_channels=3), norm="batch", stem_stride=2, level_attention=False))


@pytest.mark.parametrize("widths, blocks", [((16, 24, 24, 32), None), (None, 2), ((16, 24, 24, 32), 3)])
def test_growth_that_keeps_the_deepest_width_is_exact(batch_norm_net, widths, blocks):
    x = torch.randn(2, 3, 32, 48)
    grown, difference = grow(batch_norm_net, widths, blocks, check=x)
    assert difference < 1e-5
    if widths:
        assert grown.config.widths == widths
    assert grown.config.blocks_per_level == (blocks or 1)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), batch_norm_net(x), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in batch_norm_net.parameters())


def test_exact_at_a_full_resolution_stem_and_deeper_at_every_timestep():
    net = trained_like(replace(micro_config(out_channels=2), norm="batch", stem_stride=1, level_attention=False))
    x = torch.randn(1, 3, 32, 32)
    wider, _ = grow(net, (16, 24, 24, 32))
    deeper, _ = grow(net, None, 2)
    with torch.no_grad():
        t0 = torch.zeros(1, dtype=torch.long)  # where segmentation calls it
        torch.testing.assert_close(wider.eval()(x, t0), net(x, t0), atol=1e-5, rtol=0)
        for t in (0, 7, 500):
            tt = torch.full((1,), t)
            torch.testing.assert_close(deeper.eval()(x, tt), net(x, tt), atol=1e-5, rtol=0)


def test_attention_at_a_widened_level_is_close_not_exact():
    net = trained_like(replace(micro_config(out_channels=3), norm="batch", level_attention=True))
    _, difference = grow(net, (16, 24, 24, 32), check=torch.randn(1, 3, 32, 32))
    assert 1e-5 < difference < 10


def test_widening_the_deepest_level_is_close_and_the_change_is_reported(batch_norm_net):
    x = torch.randn(2, 3, 32, 32)
    _, difference = grow(batch_norm_net, (8, 16, 16, 40), check=x)
    assert difference is not None and difference > 1e-5  # the bottleneck attention's GroupNorm(1) sees new channels


def test_the_grown_network_learns_with_its_new_channels(batch_norm_net):
    grown, _ = grow(batch_norm_net, (16, 24, 24, 32), 2)
    grown.train()
    x, target = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(grown(x), target)
    loss.backward()
    w = grown.encoder[0].blocks[0].conv2.weight  # old outputs (rows 0-7) from new inputs (columns 8-15): zero ...
    assert float(w[:8, 8:].abs().max()) == 0.0
    assert float(w.grad[:8, 8:].abs().max()) > 0  # ... but with a gradient, so they start to matter
    added = grown.encoder[1].blocks[1].norm2.weight  # an added block's last norm: zero, with a gradient
    assert float(added.abs().max()) == 0.0 and float(added.grad.abs().max()) > 0


def test_growing_refuses_to_shrink_or_change_depth(batch_norm_net):
    with pytest.raises(ValueError, match="cannot shrink"):
        grow(batch_norm_net, (8, 8, 16, 32))
    with pytest.raises(ValueError, match="structure"):  # level 1 as wide as level 0: its projection would go
        grow(batch_norm_net, (16, 16, 16, 32))
    with pytest.raises(ValueError, match="number of levels"):
        grow(batch_norm_net, (16, 24, 32))
