"""Tests for napari_genselfdiff.core.losses: SS loss (eq. 9-10), focal loss (eq. 11), SS + focal."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from napari_genselfdiff.core.errors import MaskInputError
from napari_genselfdiff.core.losses import SSFocalLoss, focal_loss, structural_similarity_loss


def _rand_case(b=2, c=3, h=6, w=5, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, c, h, w, generator=gen) * scale).requires_grad_(True)
    target = torch.randint(0, c, (b, h, w), generator=gen)
    return logits, target


def _perfect_logits(target, c, big=1e4):
    return F.one_hot(target, c).permute(0, 3, 1, 2).float() * big


# ---------------------------------------------------------------- focal loss
def test_focal_gamma0_equals_cross_entropy():
    logits, target = _rand_case(seed=1)
    expected = F.cross_entropy(logits, target)
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-6)
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[0, :2] = True
    masked_target = target.masked_fill(ignore, -100)
    expected = F.cross_entropy(logits, masked_target, ignore_index=-100)
    got = focal_loss(logits, target, ignore, gamma=0.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_one_pixel_by_hand():
    # Logits (0, ln 3): softmax = (1/4, 3/4). True class 1, so p_t = 3/4.
    # FL = -(1 - 3/4)^2 * ln(3/4) = 0.0625 * 0.2876821 = 0.0179801 (one pixel, N = 1).
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    target = torch.tensor([[[1]]])
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(0.0625 * -math.log(0.75), rel=1e-6)
    # True class 0: p_t = 1/4, FL = -(3/4)^2 ln(1/4) = 0.5625 * 1.3862944 = 0.7798.
    target0 = torch.tensor([[[0]]])
    assert focal_loss(logits, target0).item() == pytest.approx(0.5625 * math.log(4.0), rel=1e-6)
    # alpha scales the pixel's term by its class weight and keeps N = 1.
    got = focal_loss(logits, target, alpha=[1.0, 0.25])
    assert got.item() == pytest.approx(0.25 * 0.0625 * -math.log(0.75), rel=1e-6)


def test_focal_alpha_normalised_by_pixel_count():
    logits, target = _rand_case(seed=2)
    alpha = torch.tensor([0.2, 1.0, 3.0])
    expected = F.cross_entropy(logits, target, weight=alpha, reduction="sum") / target.numel()
    assert focal_loss(logits, target, gamma=0.0, alpha=alpha).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(logits, target, alpha=[1.0, 2.0])


# ---------------------------------------------------------------- structural similarity loss
def _ss_2x2_by_hand(beta: float) -> float:
    """The 2x2, 2-class case of test_ss_2x2_by_hand, computed step by step in plain Python.

    target = [[0, 1], [1, 1]] -> pixels (row-major) y1 = [0, 1, 1, 1], y0 = [1, 0, 0, 0].
    logits: class 0 = 0, class 1 = [-ln 3, ln 3, ln 3, 0] -> p1 = [1/4, 3/4, 3/4, 1/2], p0 = 1 - p1.
    Class 1: mu_y = 0.75, sigma_y = sqrt((0.75^2 + 3 * 0.25^2) / 4) = sqrt(0.1875) = 0.4330127
             mu_p = 0.5625, sigma_p = sqrt((0.3125^2 + 2 * 0.1875^2 + 0.0625^2) / 4) = 0.2072890
             ny = (y - 0.75 + 0.01) / 0.4430127 = [-1.670381, 0.586891, 0.586891, 0.586891]
             np = (p - 0.5625 + 0.01) / 0.2172890 = [-1.392155, 0.908928, 0.908928, -0.241614]
             e1 = [0.278226, 0.322037, 0.322037, 0.828504]
    Class 0: mu_y = 0.25, sigma_y = 0.4330127; mu_p = 0.4375, sigma_p = 0.2072890
             ny = [0.76, -0.24, -0.24, -0.24] / 0.4430127 = [1.715526, -0.541745, ...]
             np = [0.3225, -0.1775, -0.1775, 0.0725] / 0.2172890 = [1.484198, -0.816884, -0.816884, 0.333657]
             e0 = [0.231328, 0.275139, 0.275139, 0.875402]
    e_max = 0.875402 (class 0, pixel 3).
    CE = -y log p: class 0 pixel 0: ln(4/3) = 0.287682; class 1 pixels 1, 2: 0.287682; pixel 3: ln 2.
    beta = 0.1: threshold 0.08754, every e passes, M = 8; only y = 1 entries have CE > 0:
        L = (0.287682 * 0.231328 + 2 * 0.287682 * 0.322037 + 0.693147 * 0.828504) / 8
          = (0.066549 + 0.185289 + 0.574276) / 8 = 0.103264
    beta = 0.5: threshold 0.43770, f = 1 at pixel 3 of both classes, M = 2; class 0 has y = 0 there:
        L = 0.693147 * 0.828504 / 2 = 0.287138
    """
    c1 = 0.01
    y1 = [0.0, 1.0, 1.0, 1.0]
    p1 = [0.25, 0.75, 0.75, 0.5]
    maps = {1: (y1, p1), 0: ([1 - v for v in y1], [1 - v for v in p1])}
    errors, ces = [], []
    for c, (y, p) in maps.items():
        mu_y, mu_p = sum(y) / 4, sum(p) / 4
        sd_y = math.sqrt(sum((v - mu_y) ** 2 for v in y) / 4)
        sd_p = math.sqrt(sum((v - mu_p) ** 2 for v in p) / 4)
        for yi, pi in zip(y, p):
            errors.append(abs((yi - mu_y + c1) / (sd_y + c1) - (pi - mu_p + c1) / (sd_p + c1)))
            ces.append(-yi * math.log(pi))
    e_max = max(errors)
    hard = [1.0 if e > beta * e_max else 0.0 for e in errors]
    return sum(ce * f * e for ce, f, e in zip(ces, hard, errors)) / sum(hard)


@pytest.mark.parametrize("beta,expected", [(0.1, 0.103264), (0.5, 0.287138)])
def test_ss_2x2_by_hand(beta, expected):
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[-math.log(3.0), math.log(3.0)], [math.log(3.0), 0.0]])
    target = torch.tensor([[[0, 1], [1, 1]]])
    assert _ss_2x2_by_hand(beta) == pytest.approx(expected, abs=2e-6)
    got = structural_similarity_loss(logits, target, beta=beta)
    assert got.item() == pytest.approx(_ss_2x2_by_hand(beta), rel=1e-5)


def test_ss_gradient_flows_through_error_unless_detached():
    logits, target = _rand_case(seed=3)

    def reference(detach: bool) -> torch.Tensor:
        # Eq. 9-10 written directly (population std; sigma > 0 here, so no floor is needed).
        p = logits.softmax(1)
        y = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
        norm = lambda z: (z - z.mean((2, 3), keepdim=True) + 0.01) / (  # noqa: E731
            z.std((2, 3), keepdim=True, unbiased=False) + 0.01
        )
        e = (norm(y) - norm(p)).abs()
        f = (e > 0.1 * e.max()).float().detach()
        ce = -y * logits.log_softmax(1)
        return (ce * f * (e.detach() if detach else e)).sum() / f.sum()

    for detach in (False, True):
        got_grad = torch.autograd.grad(structural_similarity_loss(logits, target, detach_error=detach), logits)[0]
        ref_grad = torch.autograd.grad(reference(detach), logits)[0]
        assert torch.allclose(got_grad, ref_grad, atol=1e-6)
    full = torch.autograd.grad(structural_similarity_loss(logits, target), logits)[0]
    detached = torch.autograd.grad(structural_similarity_loss(logits, target, detach_error=True), logits)[0]
    assert not torch.allclose(full, detached, atol=1e-4)


def test_ss_emax_scopes_differ_and_are_validated():
    logits, target = _rand_case(seed=4)
    g = structural_similarity_loss(logits, target, beta=0.9, emax="global")
    p = structural_similarity_loss(logits, target, beta=0.9, emax="per_map")
    assert torch.isfinite(g) and torch.isfinite(p) and g.item() != pytest.approx(p.item())
    with pytest.raises(ValueError, match="emax"):
        structural_similarity_loss(logits, target, emax="batch")


# ---------------------------------------------------------------- robustness
@pytest.mark.parametrize("loss_name", ["ss", "focal", "total"])
def test_no_nan_with_extreme_logits_and_single_class_target(loss_name):
    loss_fn = SSFocalLoss()

    def compute(logits, target):
        if loss_name == "ss":
            return structural_similarity_loss(logits, target)
        if loss_name == "focal":
            return focal_loss(logits, target)
        return loss_fn(logits, target)[0]

    gen = torch.Generator().manual_seed(5)
    extreme = (torch.randint(0, 2, (2, 3, 4, 4), generator=gen).float() * 2 - 1) * 1e4
    cases = [
        (extreme, torch.randint(0, 3, (2, 4, 4), generator=gen)),  # saturated, often wrong
        (torch.randn(2, 3, 4, 4, generator=gen), torch.zeros(2, 4, 4, dtype=torch.long)),  # sigma_y = 0
        (_perfect_logits(torch.zeros(2, 4, 4, dtype=torch.long), 3), torch.zeros(2, 4, 4, dtype=torch.long)),
    ]
    for logits, target in cases:
        logits = logits.clone().requires_grad_(True)
        loss = compute(logits, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_gradients_flow_on_random_logits():
    logits, target = _rand_case(seed=6)
    total, parts = SSFocalLoss()(logits, target)
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert set(parts) == {"ss", "focal"} and not parts["ss"].requires_grad
    assert total.item() == pytest.approx(parts["ss"].item() + parts["focal"].item(), rel=1e-6)


def test_perfect_prediction_gives_near_zero_loss():
    _, target = _rand_case(b=2, c=4, seed=7)
    logits = _perfect_logits(target, 4, big=50.0).requires_grad_(True)
    total, parts = SSFocalLoss()(logits, target)
    assert total.item() < 1e-6 and parts["ss"].item() < 1e-6 and parts["focal"].item() < 1e-6
    # At 1e4 the softmax is exactly one-hot: e = 0 everywhere, so M = 0 and the SS loss is 0 with
    # a usable (zero) gradient.
    logits = _perfect_logits(target, 4).requires_grad_(True)
    ss = structural_similarity_loss(logits, target)
    ss.backward()
    assert ss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_multiclass_and_lambda():
    logits, target = _rand_case(b=2, c=4, h=8, w=8, seed=8)
    ss = structural_similarity_loss(logits, target)
    fl = focal_loss(logits, target)
    total, _ = SSFocalLoss(lam=0.5)(logits, target)
    assert total.item() == pytest.approx(ss.item() + 0.5 * fl.item(), rel=1e-6)
    # A better prediction lowers both parts.
    better = logits.detach() + 3.0 * F.one_hot(target, 4).permute(0, 3, 1, 2)
    assert structural_similarity_loss(better, target) < ss
    assert focal_loss(better, target) < fl


def test_ignore_mask_removes_pixels():
    logits, target = _rand_case(b=2, c=3, h=6, w=6, seed=9)
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[..., 4:] = True  # last two columns unannotated
    loss_fn = SSFocalLoss()
    total, parts = loss_fn(logits, target, ignore)
    # Same as the loss on the annotated crop: the SS means/stds use only counted pixels too.
    crop_total, crop_parts = loss_fn(logits[..., :4], target[..., :4])
    assert total.item() == pytest.approx(crop_total.item(), rel=1e-5)
    assert parts["ss"].item() == pytest.approx(crop_parts["ss"].item(), rel=1e-5)
    # Whatever sits under the mask (even out-of-range labels) changes nothing and gets no gradient.
    logits2 = logits.detach().clone()
    logits2[..., 4:] = 1e3
    target2 = target.clone()
    target2[..., 4:] = 255
    logits2.requires_grad_(True)
    total2, _ = loss_fn(logits2, target2, ignore)
    total2.backward()
    assert total2.item() == pytest.approx(total.item(), rel=1e-5)
    assert torch.equal(logits2.grad[..., 4:], torch.zeros_like(logits2.grad[..., 4:]))
    # Everything ignored: zero loss that still backpropagates.
    logits3 = logits.detach().clone().requires_grad_(True)
    empty, _ = loss_fn(logits3, target2, torch.ones_like(ignore))
    empty.backward()
    assert empty.item() == 0.0 and torch.isfinite(logits3.grad).all()


def test_input_validation():
    logits, target = _rand_case(seed=10)
    with pytest.raises(MaskInputError, match=r"\[0, 2\]"):
        focal_loss(logits, target + 3)
    with pytest.raises(MaskInputError, match="shape"):
        structural_similarity_loss(logits, target[:, :-1])
    with pytest.raises(MaskInputError, match="integer"):
        focal_loss(logits, target.float())
    with pytest.raises(MaskInputError, match="ignore_mask"):
        focal_loss(logits, target, torch.zeros_like(target))
    with pytest.raises(ValueError, match="2 classes"):
        focal_loss(logits[:, :1], target.clamp(max=0))
    with pytest.raises(ValueError, match="beta"):
        SSFocalLoss(beta=1.5)


def test_bf16_autocast_and_bf16_logits_give_float32_loss():
    logits, target = _rand_case(seed=11)
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(logits.detach())
        total, _ = SSFocalLoss()(out, target)
    assert out.dtype == torch.bfloat16 and total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert torch.isfinite(conv.weight.grad).all()
    reference, _ = SSFocalLoss()(out.detach().float(), target)
    assert total.item() == pytest.approx(reference.item(), rel=1e-5)


def test_config_round_trip():
    loss_fn = SSFocalLoss(lam=0.5, gamma=1.5, alpha=[1.0, 2.0], emax="per_map")
    config = json.loads(json.dumps(loss_fn.to_config()))
    assert config["name"] == "ss_focal" and config["beta"] == 0.1 and config["c1"] == 0.01
    assert SSFocalLoss.from_config(config).to_config() == config


def test_dice_ce_is_small_for_a_confident_right_answer_and_large_for_a_wrong_one():
    from napari_genselfdiff.core.losses import DiceCELoss

    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:10, 4:10] = 1
    right = F.one_hot(target, 2).permute(0, 3, 1, 2).float() * 20 - 10
    loss_fn = DiceCELoss()
    good, parts = loss_fn(right, target)
    bad, _ = loss_fn(-right, target)
    assert good.item() < 0.01 and bad.item() > 10
    assert set(parts) == {"ce", "dice"}
    # CE part equals PyTorch's cross-entropy; ignored pixels count for nothing.
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    total, parts = loss_fn(logits, target)
    assert torch.allclose(parts["ce"], F.cross_entropy(logits, target), atol=1e-6)
    total.backward()
    assert torch.isfinite(logits.grad).all()
    ignore = torch.zeros(2, 16, 16, dtype=torch.bool)
    ignore[:, :, 8:] = True
    changed = logits.detach().clone()
    changed[:, :, :, 8:] = 100.0
    a, _ = loss_fn(logits.detach(), target, ignore)
    b, _ = loss_fn(changed, target, ignore)
    assert torch.allclose(a, b)
