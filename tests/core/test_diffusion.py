"""Tests for napari_genselfdiff.core.diffusion: schedules, forward process, P2 loss, samplers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from napari_genselfdiff.core.diffusion import (
    SCHEDULES,
    GaussianDiffusion,
    ddim_sample,
    ddim_sample_progressive,
    ddim_timesteps,
    ddpm_sample,
    ddpm_sample_progressive,
    make_betas,
)
from napari_genselfdiff.core.progress import Returning


def _abar_python(betas: list[float]) -> list[float]:
    """Cumulative product of (1 - beta), in plain Python, independent of the implementation."""
    out, acc = [], 1.0
    for b in betas:
        acc *= 1.0 - b
        out.append(acc)
    return out


def _oracle_x0_model(diffusion: GaussianDiffusion, x0: torch.Tensor, calls: list | None = None):
    """A model that knows the clean image: eps is exactly what takes x0 to the given x_t."""

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append((t.clone(), torch.is_grad_enabled()))
        abar = torch.tensor([diffusion.alphas_cumprod[int(i)].item() for i in t], dtype=torch.float64)
        abar = abar.view(-1, 1, 1, 1)
        eps = (x_t.double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()
        return eps.to(x_t.dtype)

    return model


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("T", [10, 1000])
def test_schedule_shape_dtype_monotone(kind, T):
    betas = make_betas(kind, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert bool((betas > 0).all()) and bool((betas < 1).all())
    diffs = betas[1:] - betas[:-1]
    if kind == "cosine":
        assert bool((diffs >= 0).all())  # non-decreasing: the tail is clipped to a plateau
    else:
        assert bool((diffs > 0).all())


@pytest.mark.parametrize("kind", ["scaled_linear", "linear"])
def test_linear_schedule_endpoints(kind):
    betas = make_betas(kind, 1000)
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)


def test_scaled_linear_is_square_of_linspace_and_differs_from_linear():
    betas = make_betas("scaled_linear", 1000)
    step = (math.sqrt(0.02) - math.sqrt(1e-4)) / 999
    for i in (1, 500, 998):
        assert betas[i].item() == pytest.approx((math.sqrt(1e-4) + i * step) ** 2, rel=1e-12)
    # The middle value is below the plain linear schedule's (convex in i).
    assert betas[500].item() < make_betas("linear", 1000)[500].item()


def test_cosine_endpoints():
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = make_betas("cosine", T)
    assert betas[0].item() == pytest.approx(1 - f(1) / f(0), rel=1e-9)
    assert betas[-1].item() == pytest.approx(0.999)  # clipped
    assert betas[T // 2].item() == pytest.approx(1 - f(T // 2 + 1) / f(T // 2), rel=1e-9)


def test_unknown_schedule_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        make_betas("quadratic")
    for name in SCHEDULES:
        assert name in str(info.value)
    with pytest.raises(ValueError):
        make_betas("linear", 0)
    with pytest.raises(ValueError):
        GaussianDiffusion.from_config(schedule="quadratic")


def test_abar_T_scaled_linear_close_to_zero():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 1000)
    step = (math.sqrt(0.02) - math.sqrt(1e-4)) / 999
    expected = _abar_python([(math.sqrt(1e-4) + i * step) ** 2 for i in range(1000)])[-1]
    assert expected == pytest.approx(7.3341e-4, rel=1e-4)  # x_T keeps sqrt(7.3e-4) = 2.7% of x_0
    assert diffusion.alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-9)
    assert diffusion.alphas_cumprod.dtype == torch.float64


# ---------------------------------------------------------------- forward process
def test_q_sample_statistics():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 1000)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-1.0, -0.3, 0.4, 1.0]).view(1, 1, 2, 2)
    n, t = 20000, 300
    xt = diffusion.q_sample(x0.expand(n, 3, 2, 2).contiguous(), torch.full((n,), t), generator=gen)
    abar = diffusion.alphas_cumprod[t].item()
    mean, var = xt.mean(0), xt.var(0)
    # Standard error of the mean is sqrt((1 - abar) / n); 5 of them is a safe bound.
    tol_mean = 5 * math.sqrt((1 - abar) / n)
    assert torch.allclose(mean, (math.sqrt(abar) * x0[0]).expand(3, 2, 2), atol=tol_mean)
    # Var of the sample variance is about 2 var^2 / n.
    assert torch.allclose(var, torch.full_like(var, 1 - abar), atol=5 * (1 - abar) * math.sqrt(2 / n))


def test_q_sample_with_given_noise_and_inverse():
    diffusion = GaussianDiffusion.from_config("linear", 100)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 5, 5, generator=gen) * 2 - 1
    noise = torch.randn(4, 3, 5, 5, generator=gen)
    t = torch.tensor([0, 7, 50, 99])
    xt = diffusion.q_sample(x0, t, noise)
    abar = torch.tensor(_abar_python(make_betas("linear", 100).tolist()))[t].float().view(-1, 1, 1, 1)
    assert torch.allclose(xt, abar.sqrt() * x0 + (1 - abar).sqrt() * noise, atol=1e-6)
    assert torch.allclose(diffusion.predict_x0_from_eps(xt, t, noise), x0, atol=1e-4)
    assert torch.allclose(diffusion.predict_eps_from_x0(xt, t, x0), noise, atol=1e-4)
    # A scalar timestep applies to the whole batch.
    assert torch.allclose(diffusion.q_sample(x0, 7, noise), diffusion.q_sample(x0, torch.full((4,), 7), noise))


def test_timestep_validation():
    diffusion = GaussianDiffusion.from_config("linear", 10)
    x0 = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        diffusion.q_sample(x0, torch.tensor([0, 10]))
    with pytest.raises(ValueError):
        diffusion.q_sample(x0, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integers"):
        diffusion.q_sample(x0, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        diffusion.q_sample(x0, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        diffusion.p2_weight(torch.tensor([10]))


# ---------------------------------------------------------------- SNR and P2 weights
@pytest.mark.parametrize("k,gamma", [(1.0, 1.0), (2.0, 0.5), (1.0, 0.0)])
def test_p2_weight_formula(k, gamma):
    diffusion = GaussianDiffusion.from_config("scaled_linear", 1000, p2_k=k, p2_gamma=gamma)
    abar = _abar_python(make_betas("scaled_linear", 1000).tolist())
    t = torch.tensor([0, 10, 500, 999])
    snr, weight = diffusion.snr(t), diffusion.p2_weight(t)
    for j, i in enumerate(t.tolist()):
        expected_snr = abar[i] / (1 - abar[i])
        assert snr[j].item() == pytest.approx(expected_snr, rel=1e-9)
        assert weight[j].item() == pytest.approx(1.0 / (k + expected_snr) ** gamma, rel=1e-9)
    if gamma == 0:
        assert bool((weight == 1).all())
    else:
        # P2 down-weights the clean-up (high-SNR, small-t) steps.
        assert bool((weight[1:] > weight[:-1]).all())


# ---------------------------------------------------------------- training loss
def test_loss_with_zero_model_is_weighted_mean_of_noise_squared():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 1000)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(3, 3, 4, 4, generator=gen) * 2 - 1
    noise = torch.randn(3, 3, 4, 4, generator=gen)
    t = torch.tensor([5, 400, 990])
    out = diffusion.training_loss(lambda x, tt: torch.zeros_like(x), x0, t=t, noise=noise)
    abar = _abar_python(make_betas("scaled_linear", 1000).tolist())
    per = []
    for b, i in enumerate(t.tolist()):
        w = 1.0 / (1.0 + abar[i] / (1 - abar[i]))  # k = 1, gamma = 1
        per.append(w * noise[b].pow(2).mean().item())
    assert out["per_sample"].tolist() == pytest.approx(per, rel=1e-5)
    assert out["loss"].item() == pytest.approx(sum(per) / 3, rel=1e-5)
    assert out["loss"].dtype == torch.float32 and out["loss"].ndim == 0
    assert torch.equal(out["t"], t)


def test_loss_with_oracle_model_is_zero():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 1000)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    noise = torch.randn(2, 3, 4, 4, generator=gen)
    out = diffusion.training_loss(lambda x, tt: noise, x0, noise=noise, generator=gen)
    assert out["loss"].item() == 0.0


def test_loss_draws_integer_timesteps_and_backpropagates():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 50)
    seen = []
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def model(x, t):
        seen.append(t)
        return conv(x)

    gen = torch.Generator().manual_seed(4)
    x0 = torch.rand(64, 3, 4, 4, generator=gen) * 2 - 1
    out = diffusion.training_loss(model, x0, generator=gen)
    t = seen[0]
    assert t.dtype == torch.int64 and t.shape == (64,)
    assert int(t.min()) >= 0 and int(t.max()) <= 49 and len(t.unique()) > 20
    out["loss"].backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    # The generator drives both t and the noise: the same seed gives the same draws.
    a = diffusion.training_loss(model, x0, generator=torch.Generator().manual_seed(9))
    b = diffusion.training_loss(model, x0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a["t"], b["t"]) and torch.equal(a["loss"], b["loss"])


def test_loss_rejects_wrong_model_output():
    diffusion = GaussianDiffusion.from_config("linear", 10)
    with pytest.raises(ValueError, match="model returned"):
        diffusion.training_loss(lambda x, t: x[:, :1], torch.zeros(2, 3, 4, 4))


def test_loss_under_bf16_autocast_is_float32():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 100)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = diffusion.training_loss(lambda x, t: conv(x), x0, t=torch.tensor([0, 99]))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert torch.isfinite(conv.weight.grad).all()


def test_config_round_trip_and_json():
    diffusion = GaussianDiffusion.from_config("cosine", 200, p2_k=2.0, p2_gamma=0.5)
    config = json.loads(json.dumps(diffusion.to_config()))
    assert config == {"schedule": "cosine", "timesteps": 200, "p2_k": 2.0, "p2_gamma": 0.5}
    again = GaussianDiffusion.from_config(**config)
    assert torch.equal(again.alphas_cumprod, diffusion.alphas_cumprod)
    custom = GaussianDiffusion([0.1, 0.2, 0.3])
    rebuilt = GaussianDiffusion.from_config(**json.loads(json.dumps(custom.to_config())))
    assert torch.equal(rebuilt.betas, custom.betas) and rebuilt.num_timesteps == 3
    with pytest.raises(ValueError):
        GaussianDiffusion([0.1, 1.0])
    with pytest.raises(ValueError):
        GaussianDiffusion([0.1], p2_k=-1)


# ---------------------------------------------------------------- samplers
def test_ddim_timesteps_evenly_spaced():
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 50 == len(set(ts))
    assert ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    gaps = [a - b for a, b in zip(ts[:-1], ts[1:])]
    assert max(gaps) - min(gaps) <= 1
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ValueError):
        ddim_timesteps(10, 11)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_with_x0_oracle_recovers_x0(eta):
    diffusion = GaussianDiffusion.from_config("scaled_linear", 1000)
    gen = torch.Generator().manual_seed(5)
    x0 = torch.rand(2, 3, 8, 8, generator=gen) * 1.8 - 0.9
    out = ddim_sample(_oracle_x0_model(diffusion, x0), diffusion, x0.shape, steps=20, eta=eta, generator=gen)
    assert out.shape == x0.shape
    assert torch.allclose(out, x0, atol=1e-4)


def test_ddim_eta0_is_deterministic_given_x_T():
    diffusion = GaussianDiffusion.from_config("scaled_linear", 100)
    conv = torch.nn.Conv2d(3, 3, 1)
    x_T = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    a = ddim_sample(lambda x, t: conv(x), diffusion, x_T.shape, steps=5, x_T=x_T)
    b = ddim_sample(lambda x, t: conv(x), diffusion, x_T.shape, steps=5, x_T=x_T)
    assert torch.equal(a, b) and a.abs().max() <= 1.0


def test_ddpm_tiny_T_shape_and_oracle():
    diffusion = GaussianDiffusion.from_config("linear", 20)
    gen = torch.Generator().manual_seed(7)
    out = ddpm_sample(lambda x, t: torch.zeros_like(x), diffusion, (2, 3, 6, 6), generator=gen)
    assert out.shape == (2, 3, 6, 6) and torch.isfinite(out).all()
    x0 = torch.rand(2, 3, 6, 6, generator=gen) * 1.8 - 0.9
    recovered = ddpm_sample(_oracle_x0_model(diffusion, x0), diffusion, x0.shape, generator=gen)
    assert torch.allclose(recovered, x0, atol=1e-4)


def _drain(gen):
    """Collect all yielded items and the generator's return value."""
    items = Returning(gen)
    return list(items), items.value


def test_progressive_generators_yield_one_event_per_step():
    diffusion = GaussianDiffusion.from_config("linear", 20)
    calls: list = []
    x0 = torch.zeros(1, 3, 4, 4)
    model = _oracle_x0_model(diffusion, x0, calls)
    grad_between_steps = []

    def consume(gen):
        items = []
        for item in gen:
            grad_between_steps.append(torch.is_grad_enabled())
            items.append(item)
        return items

    items = consume(ddim_sample_progressive(model, diffusion, x0.shape, steps=7))
    events, final = items[:-1], items[-1]
    assert len(events) == 7 and isinstance(final, torch.Tensor) and final.shape == x0.shape
    assert [e["step"] for e in events] == list(range(1, 8)) and {e["total"] for e in events} == {7}
    assert [int(c[0][0]) for c in calls] == ddim_timesteps(20, 7)
    assert all(c[0].dtype == torch.int64 for c in calls)
    # No gradients inside the sampler, but the consumer keeps its own grad mode between steps.
    assert not any(c[1] for c in calls) and all(grad_between_steps)

    items, returned = _drain(ddpm_sample_progressive(model, diffusion, x0.shape))
    assert len(items) == 21 and [e["step"] for e in items[:-1]] == list(range(1, 21))
    assert [e["t"] for e in items[:-1]] == list(range(19, -1, -1))
    assert returned is items[-1]
