"""Learning-rate schedules (core.training.schedule), their use in the training loop, and the allocator switch."""

from __future__ import annotations

import math

import pytest
import torch

from napari_genselfdiff.core.allocator import keep_freed_memory
from napari_genselfdiff.core.errors import TrainingInputError
from napari_genselfdiff.core.training.finetune import FinetuneConfig
from napari_genselfdiff.core.training.loop import train_loop
from napari_genselfdiff.core.training.schedule import check_schedule, learning_rate


def test_constant_schedule_is_the_paper_rate_after_warmup():
    assert [learning_rate(s, 100, 1e-4) for s in (1, 50, 100)] == [1e-4] * 3
    assert learning_rate(5, 100, 1e-4, "constant", warmup=10) == pytest.approx(5e-5)
    assert learning_rate(10, 100, 1e-4, "constant", warmup=10) == pytest.approx(1e-4)


def test_cosine_warms_up_then_decays_to_zero_monotonically():
    rates = [learning_rate(s, 200, 1e-3, "cosine", warmup=20) for s in range(1, 201)]
    assert rates[0] == pytest.approx(1e-3 / 20)
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 19
    after = rates[19:]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert rates[109] == pytest.approx(0.5e-3, rel=1e-6)  # half way through the decay
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name, warmup", [("linear", 0), ("cosine", -1), ("cosine", 2.5)])
def test_bad_schedule_settings_are_named(name, warmup):
    with pytest.raises(TrainingInputError, match="lr_schedule|warmup_steps"):
        check_schedule(name, warmup)


def test_finetune_config_checks_the_schedule():
    cfg = FinetuneConfig(pairs=[], lr_schedule="step")
    with pytest.raises(TrainingInputError, match="lr_schedule must be one of constant, cosine"):
        cfg.check()


def test_train_loop_applies_the_rate_of_each_step_and_resumes_on_the_same_curve():
    def run(start: int, total: int) -> list[float]:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=123.0)
        seen: list[float] = []

        def loss_fn(net, batch, step):
            seen.append(opt.param_groups[0]["lr"])
            return {"loss": net(batch).pow(2).mean()}

        gen = train_loop(model=model, batches=lambda step: torch.ones(2, 4), loss_fn=loss_fn, optimizer=opt,
                         total_steps=total, device=torch.device("cpu"), start_step=start,
                         lr_at=lambda step: learning_rate(step, total, 0.1, "cosine", warmup=2))
        for _ in gen:
            pass
        return seen

    whole = run(0, 10)
    expected = [learning_rate(s, 10, 0.1, "cosine", warmup=2) for s in range(1, 11)]
    assert whole == pytest.approx(expected)
    assert run(6, 10) == pytest.approx(expected[6:])  # a resumed run continues on the curve
    assert not any(math.isclose(r, 123.0) for r in whole)


def test_keep_freed_memory_is_idempotent_and_reports_whether_it_applies():
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() is first
    import sys
    if sys.platform.startswith("linux"):
        assert first  # glibc accepts the settings


def test_grad_clip_bounds_each_update():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    gen = train_loop(model=model, batches=lambda step: torch.full((2, 4), 100.0),
                     loss_fn=lambda net, batch, step: {"loss": net(batch).pow(2).mean()}, optimizer=opt,
                     total_steps=1, device=torch.device("cpu"), grad_clip=0.5)
    for _ in gen:
        pass
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-4)  # the raw gradient norm is ~1e4


def test_grad_clip_setting_is_checked():
    with pytest.raises(TrainingInputError, match="grad_clip must be a positive number"):
        FinetuneConfig(pairs=[], grad_clip=-1.0).check()
