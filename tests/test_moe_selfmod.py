"""train-moe's self-modification experiments (the lab's Phase 7b): synthetic label injection, the router-entropy
term, experts grown during training (and resumed after a kill), and training without a validation split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from phases.core.jsonio import read_jsonl
from phases.core.models.moe import MoELayer
from phases.core.models.moe_classifier import LossWeights, synthetic_targets, training_loss

SMALL = ("--train-limit", "300", "--batch-size", "32", "--deterministic", "--device", "cpu")


def train(cli, *args: str) -> dict:
    code, out, err = cli("train-moe", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def history(m: dict, split: str = "train") -> list[dict]:
    return [h for h in read_jsonl(Path(m["run_dir"]) / "history.jsonl") if h["split"] == split]


# --- synthetic labels ---------------------------------------------------------------------------------------------

def test_synthetic_targets_replace_exactly_the_fraction_with_the_routers_choice():
    torch.manual_seed(0)
    y = torch.arange(40) % 10
    top = torch.arange(40) % 12  # the router's argmax per item; experts 10 and 11 fold onto classes 0 and 1
    probs = torch.nn.functional.one_hot(top, 12).float() * 0.9 + 0.1 / 12
    for fraction, k in ((0.25, 10), (0.1, 4), (1.0, 40), (0.0, 0)):
        target, chosen, injected = synthetic_targets(y, probs, 10, fraction)
        assert len(chosen) == k == len(set(chosen.tolist()))
        changed = torch.zeros(40, dtype=torch.bool)
        changed[chosen] = True
        assert torch.equal(target[chosen], top[chosen] % 10) and torch.equal(injected, top[chosen] % 10)
        assert torch.equal(target[~changed], y[~changed])  # the others keep their label


def test_synthetic_labels_run_reports_the_fraction_and_trains_worse(cli):
    plain = train(cli, "--epochs", "3", *SMALL)
    injected = train(cli, "--epochs", "3", *SMALL, "--synthetic-labels", "0.25")
    hist = history(injected)
    assert [h["synthetic_frac"] for h in hist] == [0.25] * 3  # 8 of every batch of 32
    assert all(0 <= h["synthetic_agree"] <= 1 for h in hist)
    assert "synthetic_frac" not in history(plain)[0] and injected["synthetic_labels"] == 0.25
    assert injected["train_loss"] > plain["train_loss"]  # a quarter of the targets disagree with the data


# --- the router-entropy term ---------------------------------------------------------------------------------------

def test_entropy_term_is_the_weighted_mean_router_entropy():
    from phases.core.data.classification import prepare_task
    from phases.core.models.moe_classifier import MoEModelConfig, build_model

    task = prepare_task("digits", seed=0)
    torch.manual_seed(0)
    model = build_model([task], MoEModelConfig(experts=6))
    model.eval()  # no dropout: the two passes below see the same network
    x, y = task.train.x[:64], task.train.y[:64]
    base, stats = training_loss(model, x, y, 0, LossWeights(balance=0.0, z=0.0))
    for w in (0.5, -0.5):
        loss, s = training_loss(model, x, y, 0, LossWeights(balance=0.0, z=0.0, entropy=w))
        with torch.no_grad():
            p = model.classify(model.features(x, 0), 0)[1].probs
        entropy = -(p * p.log()).sum(-1).mean()
        assert float(s["router_entropy"]) == pytest.approx(float(entropy), rel=1e-5)
        assert loss.item() == pytest.approx(base.item() + w * float(entropy), rel=1e-5)
        assert float(s["entropy_term"]) == pytest.approx(w * float(entropy), rel=1e-5)
        assert float(s["abs_loss"]) == pytest.approx(base.item() + abs(w) * float(entropy), rel=1e-5)


def test_entropy_weight_sharpens_or_spreads_the_routing_and_reports_its_share(cli):
    runs = {w: train(cli, "--epochs", "2", *SMALL, "--router-entropy-weight", w) for w in ("0.5", "-0.5")}
    sharp, spread = (history(runs[w])[-1] for w in ("0.5", "-0.5"))
    assert sharp["router_entropy"] < 1.0 < spread["router_entropy"]  # ln 12 = 2.48 is the uniform router's
    assert sharp["entropy_term"] > 0 > spread["entropy_term"]
    for m, h in ((runs["0.5"], sharp), (runs["-0.5"], spread)):
        assert 0 < h["entropy_share"] < 1 and m["train_entropy_share"] == h["entropy_share"]


# --- growing experts -----------------------------------------------------------------------------------------------

def test_added_expert_copies_the_source_grows_the_optimizer_and_learns():
    torch.manual_seed(0)
    layer = MoELayer(16, n_experts=3, top_k=2, hidden=8)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    x = torch.randn(64, 16)
    layer(x)[0].pow(2).mean().backward()
    opt.step()
    new = layer.add_expert(1, noise=0.1, optimizer=opt)
    assert new == 3 and layer.n_experts == 4 and layer.w1.shape == (4, 16, 8) and layer.allowed.shape == (1, 4)
    assert layer.router.out.weight.shape == (4, 16) and layer.router.out.out_features == 4
    w1 = layer.w1.detach()
    assert torch.allclose(w1[3], w1[1], atol=0.1 * float(w1.std()) * 6)
    assert not torch.equal(w1[3], w1[1])  # noise breaks the symmetry
    router = layer.router.out.weight.detach()
    assert torch.allclose(router[3], router[1], atol=0.1 * float(router.std()) * 6)  # the router's row is copied too
    state = opt.state[layer.w1]  # the grown tensor is the one the optimizer holds, its moments grown with zeros
    assert state["exp_avg"].shape == (4, 16, 8) and bool((state["exp_avg"][3] == 0).all())
    assert bool((state["exp_avg"][1] != 0).any())
    before = layer.w1[3].clone()
    y, routing = layer(x)
    assert int((routing.experts == 3).sum()) > 0  # the copy of a chosen expert is chosen too
    opt.zero_grad()
    y.pow(2).mean().backward()
    opt.step()
    assert not torch.equal(layer.w1[3], before)  # the optimizer steps it


def test_growth_schedule_and_killed_run_resumes_to_the_uninterrupted_result(cli, tmp_path):
    """2 experts growing by one after every epoch to 4: the counts rise at the scheduled epochs, the grown experts
    receive items, and a run killed after its first checkpoint (already grown) resumes alone to the same end."""
    from conftest import kill_when

    args = ["train-moe", "--epochs", "3", "--grow-experts", "2:4:1", "--top-k", "1", *SMALL]
    whole = train(cli, *args[1:], "--out", str(tmp_path / "whole"))
    hist = history(whole)
    assert [h["experts"] for h in hist] == [2, 3, 4] and [len(h["utilisation"]) for h in hist] == [2, 3, 4]
    assert hist[1]["utilisation"][2] > 0 and hist[2]["utilisation"][3] > 0  # grown experts receive items
    assert [g["epoch"] for g in whole["growth_events"]] == [1, 2] and whole["experts_final"] == 4
    assert whole["experts_start"] == 2 and whole["experts"] == (2, 3, 4)[whole["selected_epoch"] - 1]
    ckpt = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model"]["moe.w1"].shape[0] == 4 and ckpt["experts"] == 4
    killed = tmp_path / "killed"
    kill_when([*args, "--out", str(killed)], (killed / "checkpoints" / "last.pt").exists)
    resumed = train(cli, "--resume", str(killed))
    for key in ("test_acc", "val_acc", "test_loss", "train_loss", "selected_epoch", "experts", "growth_events",
                "test_utilisation", "params"):
        assert resumed[key] == whole[key], key
    assert read_jsonl(killed / "history.jsonl") == read_jsonl(tmp_path / "whole" / "history.jsonl")
    assert read_jsonl(killed / "predictions.jsonl") == read_jsonl(tmp_path / "whole" / "predictions.jsonl")


# --- no validation split -------------------------------------------------------------------------------------------

def test_val_fraction_zero_trains_on_everything_and_reports_the_last_epoch(cli):
    m = train(cli, "--epochs", "2", "--batch-size", "32", "--val-fraction", "0")
    assert m["val_n"] == 0 and m["val_acc"] is None and m["best_val_epoch"] is None
    assert m["select"] == "last" and m["selected_epoch"] == 2 and "--val-fraction 0" in m["selection"]
    assert history(m, "val") == [] and m["steps"] == 2 * 45  # all 1437 training images, batches of 32
