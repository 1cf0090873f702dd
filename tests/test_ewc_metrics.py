"""ewc's building blocks on hand-computed numbers and real data: the continual-learning metrics, the spike factor,
the per-sample Fisher against a slow per-example loop, the EWC penalty's shape, online decay, the reservoir."""

from __future__ import annotations

import pytest
import torch

from phases.core.errors import InputError
from phases.ewc.metrics import matrix_metrics, retention, spike_factors

# after stage i (rows) on task j (columns); stage i trains task i
R = [[0.90, 0.10, 0.20],
     [0.70, 0.80, 0.10],
     [0.60, 0.50, 0.95]]


def test_matrix_metrics_hand_computed():
    m = matrix_metrics(R, [0, 1, 2])
    assert m["average"] == pytest.approx((0.60 + 0.50 + 0.95) / 3)
    assert m["learning"] == pytest.approx((0.90 + 0.80 + 0.95) / 3)
    # forgetting: best before the last stage minus final; task 2 was trained last
    assert m["forgetting"][:2] == pytest.approx([0.90 - 0.60, 0.80 - 0.50])
    assert m["forgetting"][2] is None
    assert m["mean_forgetting"] == pytest.approx(0.30)
    assert m["bwt"] == pytest.approx(((0.60 - 0.90) + (0.50 - 0.80)) / 2)


def test_forgetting_uses_the_best_earlier_value_not_the_one_after_training():
    r = [[0.5, 0.0], [0.9, 0.6], [0.4, 0.7]]  # task 0 improved after stage 1 (positive transfer), then dropped
    m = matrix_metrics(r, [0, 1, 1])  # a curriculum: task 1 trained twice
    assert m["forgetting"][0] == pytest.approx(0.9 - 0.4)
    assert m["bwt"] == pytest.approx(0.4 - 0.5)
    assert m["forgetting"][1] is None  # still being trained at the last stage


def test_loss_matrix_signs_make_forgetting_positive():
    losses = [[1.0, 5.0], [1.6, 1.2]]
    m = matrix_metrics(losses, [0, 1], higher_is_better=False)
    assert m["forgetting"][0] == pytest.approx(0.6)
    assert m["bwt"] == pytest.approx(-0.6)
    assert m["average"] == pytest.approx(1.4)


def test_retention_and_modification_success():
    r = [[0.80, 0.10], [0.60, 0.40], [0.72, 0.65]]
    out = retention(r, [0, 1, 1])
    assert out["base_retention"] == pytest.approx(0.72 / 0.80)
    assert out["modification_success"] == pytest.approx(0.65)


def test_spike_factor_is_analyze_history_definition():
    recs = [{"step": s, "split": "train", "stage": "a", "loss": v} for s, v in zip(range(1, 7), [3, 2, 1, 1, 1, 1])]
    recs += [{"step": s, "split": "train", "stage": "b", "loss": v} for s, v in zip(range(7, 12), [2, 4, 3, 1, 1])]
    recs.append({"step": 6, "split": "test", "stage": "a", "task": "a", "acc": 0.5})
    (b,) = spike_factors(recs, window=3)
    assert b["baseline_loss"] == pytest.approx(1.0) and b["peak_loss"] == 4
    assert b["spike_factor"] == pytest.approx(4.0) and b["is_spike"]


# --- Fisher, on the real digits and the real models ------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_batch():
    from phases.core.data.classification import prepare_task

    d = prepare_task("digits", None, 0.1, 0)
    return d.train.x[:24].reshape(24, 64).float() / 16, d.train.y[:24]


def _ce(logits, y):
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def test_per_sample_fisher_matches_a_loop_over_examples(digits_batch):
    from phases.core.models.mlp import MLPClassifier
    from phases.ewc.fisher import batch_fisher, empirical_fisher, loop_fisher

    torch.manual_seed(0)
    model = MLPClassifier(64, [10], hidden=32)
    x, y = digits_batch
    fast = empirical_fisher(model, x, y, 0, _ce, chunk=7)  # chunks that do not divide n
    slow = loop_fisher(model, x, y, 0, _ce)
    assert fast.keys() == slow.keys()
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-4, atol=1e-8)
    assert all(float(f.sum()) > 0 for f in fast.values())
    # the minibatch form: with batches of one it is the per-sample Fisher; with larger ones it is smaller
    torch.testing.assert_close(batch_fisher(model, x, y, 0, _ce, batch_size=1)["body.0.weight"],
                               slow["body.0.weight"], rtol=1e-4, atol=1e-8)
    assert float(batch_fisher(model, x, y, 0, _ce, 24)["body.0.weight"].sum()) < float(slow["body.0.weight"].sum())


def test_per_sample_fisher_matches_loop_on_the_gpt_with_masked_targets():
    from phases.core.models.gpt import GPT, GPTConfig
    from phases.ewc.fisher import empirical_fisher, loop_fisher
    from phases.ewc.scenarios import LMAdapter, Scenario

    torch.manual_seed(0)
    model = LMAdapter(GPT(GPTConfig(block_size=12, vocab_size=20, n_layer=1, n_head=2, n_embd=16)))
    scn = Scenario("t", "seq", "gpt", [], lambda: model, 1, 1e-3)
    x = torch.randint(0, 20, (5, 12))
    y = torch.randint(0, 20, (5, 12))
    y[:, :4] = -1  # the prompt part carries no loss
    fast, slow = empirical_fisher(model, x, y, 0, scn.loss_fn), loop_fisher(model, x, y, 0, scn.loss_fn)
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-3, atol=1e-9)


# --- the penalty ------------------------------------------------------------------------------------------------------
def _model():
    torch.manual_seed(0)
    from phases.core.models.mlp import MLPClassifier

    return MLPClassifier(8, [3], hidden=6)


def _fisher(model, value=None):
    g = torch.Generator().manual_seed(1)
    return {n: (torch.rand(p.shape, generator=g) if value is None else torch.full_like(p, value))
            for n, p in model.named_parameters()}


def test_ewc_penalty_is_zero_at_theta_star_and_grows_quadratically():
    from phases.ewc.penalties import QuadraticPenalty

    model = _model()
    pen = QuadraticPenalty(lam=10.0)
    fisher = _fisher(model)
    pen.consolidate(fisher, model)
    assert float(pen(model).detach()) == 0.0
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    values = []
    for t in (0.5, 1.0, 2.0):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(theta[n] + t * direction[n])
        values.append(float(pen(model).detach()))
    assert values[1] == pytest.approx(4 * values[0], rel=1e-5)
    assert values[2] == pytest.approx(4 * values[1], rel=1e-5)
    expected = 0.5 * 10.0 * sum(float((fisher[n] * direction[n] ** 2).sum()) for n in fisher)
    assert values[1] == pytest.approx(expected, rel=1e-5)


def test_online_mode_decays_old_importance_by_gamma_and_separate_keeps_each():
    from phases.ewc.penalties import QuadraticPenalty

    model = _model()
    f1, f2 = _fisher(model, 2.0), _fisher(model, 0.5)
    online = QuadraticPenalty(1.0, "online", gamma=0.25)
    online.consolidate(f1, model)
    online.consolidate(f2, model)
    (imp,) = online.importance()
    for n in imp:
        torch.testing.assert_close(imp[n], 0.25 * f1[n] + f2[n])
    separate = QuadraticPenalty(1.0, "separate")
    separate.consolidate(f1, model)
    separate.consolidate(f2, model)
    assert len(separate.importance()) == 2


def test_l2_control_spreads_the_same_total_importance_uniformly():
    from phases.ewc.penalties import QuadraticPenalty

    model = _model()
    fisher = _fisher(model)
    l2 = QuadraticPenalty(1.0, uniform=True)
    l2.consolidate(fisher, model)
    (imp,) = l2.importance()
    total = sum(float(f.sum()) for f in fisher.values())
    assert sum(float(f.sum()) for f in imp.values()) == pytest.approx(total, rel=1e-5)
    assert len({round(float(v), 6) for f in imp.values() for v in f.flatten()}) == 1


def test_reservoir_keeps_a_uniform_sample_of_the_stream():
    from phases.ewc.replay import Reservoir

    buf = Reservoir(100, torch.Generator().manual_seed(0))
    buf.add(0, torch.zeros(1000, 2), torch.zeros(1000))
    buf.add(1, torch.ones(1000, 2), torch.ones(1000))
    assert len(buf) == 100 and buf.seen == 2000
    assert 30 <= buf.counts()[1] <= 70  # about half of what was seen came from each task
    groups = buf.sample(10)
    assert sum(len(g[2]) for g in groups) == 10 and all((g[1] == g[0]).all() for g in groups)


@pytest.mark.parametrize("mix, why", [("", "empty"), ("100:0,60:30", "sum to 100"), ("70:30,50:50", "first stage"),
                                      ("100:0", "at least two"), ("100:0,a:b", "base:modified")])
def test_bad_mix_schedules(mix, why):
    from phases.core.curriculum import parse_mix

    with pytest.raises(InputError, match=why):
        parse_mix(mix)
    assert parse_mix("100:0,70:30, 50:50") == [(100, 0), (70, 30), (50, 50)]
