"""nlab apoptosis, the lab's remaining experiments: orthogonal parent selection, random crossover, the training
loss's variance after each event, and layer-level apoptosis on the depth schedule with a starting vitality."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from phases.apoptosis.train import spike_stats
from phases.apoptosis.turnover import line_angles, mean_angle, orthogonal_partners, orthogonal_subset
from test_apoptosis import TINY_CLI, Setup, moments, shakespeare  # noqa: F401 (a fixture)


# --- orthogonal selection -----------------------------------------------------------------------------------------

def test_orthogonal_selection_picks_the_max_angle_parents_on_a_constructed_case():
    w = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.1, 1.0, 0.1], [-0.7, 0.7, 0.0], [0.0, 0.0, 1.0]])
    angles = line_angles(w, w)
    assert angles[0, 4] == pytest.approx(90.0) and angles[0, 3] == pytest.approx(45.0, abs=1e-3)  # lines: |cos|
    pool = torch.tensor([0, 1, 2, 3, 4])  # fittest first
    # the fittest (0), then the candidate farthest from it (4, or 2 at 90 degrees: 4 is exactly orthogonal),
    # then the one at the largest mean angle to those chosen
    assert orthogonal_subset(w, pool, 3).tolist() == [0, 4, 2]
    assert orthogonal_partners(w, torch.tensor([0, 4, 1]), pool).tolist() == [4, 0, 4]
    assert mean_angle(w, torch.tensor([0]), torch.tensor([4])) == pytest.approx(90.0)


def test_orthogonal_parents_are_more_nearly_orthogonal_than_the_fittest_and_random_ones(shakespeare):
    angles = {}
    for strategy in ("standard", "crossover"):
        for select in ("fittest", "orthogonal"):  # the same trained model (same seed) before the event
            s = Setup(shakespeare, steps=10, strategy=strategy, prune_rate=0.25, select=select)
            (rec, _) = s.turnover.event(s.step)
            assert rec["select"] == select and len(rec["born"]) == 32
            angles[strategy, select] = rec["parent_angle_deg"]
    weights = Setup(shakespeare, steps=10, strategy="standard").model.mlps[0].c_fc.weight.detach()
    gen = torch.Generator().manual_seed(0)
    random_sets = [mean_angle(weights, torch.randperm(128, generator=gen)[:32]) for _ in range(20)]
    random_pairs = [mean_angle(weights, torch.randperm(128, generator=gen)[:32],
                               torch.randperm(128, generator=gen)[:32]) for _ in range(20)]
    assert angles["standard", "orthogonal"] > max(random_sets)
    assert angles["standard", "orthogonal"] > angles["standard", "fittest"]
    assert angles["crossover", "orthogonal"] > max(random_pairs)
    assert angles["crossover", "orthogonal"] > angles["crossover", "fittest"]


def test_random_crossover_blends_two_parents_with_a_weight_per_newborn(shakespeare):
    s = Setup(shakespeare, strategy="crossover", prune_rate=0.25, mutation_strength=0.0, crossover="random")
    mlp = s.model.mlps[0]
    old_in, old_out = mlp.c_fc.weight.detach().clone(), mlp.c_proj.weight.detach().clone()
    (rec, _) = s.turnover.event(s.step)
    alive = s.lineage.alive[0]
    born = torch.tensor([alive.index(i) for i in rec["born"]])
    p1 = torch.tensor([alive.index(p[0]) for p in rec["parents"]])
    p2 = torch.tensor([alive.index(p[1]) for p in rec["parents"]])
    diff = old_in[p1] - old_in[p2]
    a = ((mlp.c_fc.weight.detach()[born] - old_in[p2]) * diff).sum(1) / diff.pow(2).sum(1)
    assert torch.allclose(mlp.c_fc.weight.detach()[born], a[:, None] * old_in[p1] + (1 - a[:, None]) * old_in[p2],
                          atol=1e-5)  # on the segment between the parents, incoming ...
    assert torch.allclose(mlp.c_proj.weight.detach()[:, born], a * old_out[:, p1] + (1 - a) * old_out[:, p2],
                          atol=1e-5)  # ... and outgoing alike
    assert bool(((a >= -1e-4) & (a <= 1 + 1e-4)).all()) and a.std() > 0.1  # a weight of its own per newborn


# --- loss variance after events -------------------------------------------------------------------------------------

def test_loss_variance_is_the_variance_of_the_window_after_the_event():
    losses = [3.0, 2.0, 1.0, 4.0, 2.0, 6.0, 1.0]
    out = spike_stats(losses, 3, 3)
    assert out["loss_variance"] == pytest.approx(statistics.variance([4.0, 2.0, 6.0]))
    assert out["spike_factor"] == pytest.approx(6.0 / 2.0)


def test_cli_orthogonal_random_crossover_records_angles_and_loss_variance(cli, tmp_path):
    code, out, err = cli("apoptosis", *TINY_CLI, "--strategy", "crossover", "--crossover", "random", "--select",
                         "orthogonal", "--prune-rate", "0.1", "--max-iters", "60", "--interval", "20", "--maturity",
                         "5", "--spike-window", "8", "--eval-interval", "60", "--out", str(tmp_path / "r"), "--json")
    assert code == 0, err
    m = json.loads(out)
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    assert len(events) == 2 and all(e["loss_variance"] > 0 for e in events)
    assert m["mean_loss_variance"] == pytest.approx(statistics.fmean(e["loss_variance"] for e in events))
    assert m["loss_variances"] == [e["loss_variance"] for e in events]
    assert all(layer["parent_angle_deg"] > 45 and layer["crossover"] == "random" for e in events
               for layer in e["layers"])
    from phases import registry

    numeric = [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert [k for k in numeric if not registry.get("apoptosis").writes_metric(k)] == []


# --- layer-level apoptosis on the depth schedule ---------------------------------------------------------------------

def test_depth_schedule_deep_layers_decay_the_deepest_dies_a_shallow_one_is_born(shakespeare):
    s = Setup(shakespeare, strategy="layer", layer_schedule="depth", initial_vitality=0.5, n_layer=3)
    assert s.turnover.vitality == [0.5, 0.5, 0.5]
    mlps = s.model.mlps
    before = [m.c_fc.weight.detach().clone() for m in mlps]
    moments_before = [moments(s.opt, m.c_fc.weight)[0].clone() for m in mlps]
    ids_before = [list(layer) for layer in s.lineage.alive]
    ema_before = [e.clone() for e in s.tracker.ema]
    (rec,) = s.turnover.event(s.step)
    assert rec["layer"] == 2 and rec["born_layer"] == 0 and rec["killed"] == ids_before[2]
    assert rec["vitality_after"] == pytest.approx([0.5, 0.5, 0.5 * (1 - 1 / 3)]) == s.turnover.vitality
    for layer in (1, 2):  # every other MLP moved one block deeper: weights, Adam moments, ids, fitness
        assert torch.equal(mlps[layer].c_fc.weight, before[layer - 1])
        assert torch.equal(moments(s.opt, mlps[layer].c_fc.weight)[0], moments_before[layer - 1])
        assert s.lineage.alive[layer] == ids_before[layer - 1]
        assert torch.equal(s.tracker.ema[layer], ema_before[layer - 1])
    assert not torch.equal(mlps[0].c_fc.weight, before[0]) and s.lineage.alive[0] == rec["born"]
    assert all(torch.all(m == 0) for m in moments(s.opt, mlps[0].c_fc.weight))
    assert torch.all(s.lineage.ages(0, s.step) == 0)
    loss_before = s.loss()
    s.train_step(s.x, s.y)  # still trains: the moved parameters are the optimizer's own
    assert s.loss() < loss_before


def test_fitness_schedule_starts_and_reborns_at_the_initial_vitality(shakespeare):
    s = Setup(shakespeare, strategy="layer", initial_vitality=0.5)
    assert s.turnover.vitality == [0.5, 0.5]
    (rec,) = s.turnover.event(s.step)
    assert s.turnover.vitality[rec["layer"]] == 0.5 and max(rec["vitality"]) == pytest.approx(1.0)


@pytest.mark.parametrize("args, expect", [
    (["--crossover", "mixed"], "'mixed' is not one of"),
    (["--select", "diverse"], "'diverse' is not one of"),
    (["--strategy", "layer", "--layer-schedule", "width"], "'width' is not one of"),
    (["--strategy", "layer", "--initial-vitality", "0"], "--initial-vitality 0.0: must be in (0, 1]"),
    (["--strategy", "standard", "--layer-schedule", "depth"], "apply to --strategy layer"),
    (["--strategy", "layer", "--select", "orthogonal"], "--select orthogonal chooses parent neurons"),
    (["--strategy", "layer", "--layer-schedule", "depth", "--n-layer", "1"], "--n-layer 2 or more"),
])
def test_bad_input_exits_2_naming_the_option(cli, nlab_home, args, expect):
    code, out, err = cli("apoptosis", *args)
    assert code == 2 and expect in " ".join(err.replace("│", " ").split()), err
    assert out == "" and not (nlab_home / "logs").exists()
