"""nlab apoptosis: the neuron-surgery mechanics on a small GPT trained on the real tiny Shakespeare (shapes and
parameter counts after death, birth and growth; function preservation; ages; optimizer moments; fitness), and the
command end to end (run folder, events, lineage, sample, bad input, a diverging run)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from phases.apoptosis.config import ApoptosisConfig
from phases.apoptosis.train import Learner, count_params
from phases.core import charlm, data

CPU = torch.device("cpu")
TINY = ApoptosisConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, maturity=0, seed=0)
TINY_CLI = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "8",
            "--eval-iters", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def shakespeare():
    corpus = data.load("tinyshakespeare")
    return corpus, charlm.token_tensor(corpus.train_ids())


class Setup:
    """A tiny GPT trained `steps` steps on real text with a strategy's bookkeeping attached."""

    def __init__(self, shakespeare, steps: int = 40, **overrides):
        corpus, train = shakespeare
        self.c = replace(TINY, **overrides)
        self.learner = Learner(self.c, corpus.vocab.size, CPU)
        self.model, self.opt, self.lineage = self.learner.model, self.learner.optimizer, self.learner.lineage
        self.tracker, self.turnover = self.learner.tracker, self.learner.turnover
        gen = torch.Generator().manual_seed(0)
        for i in range(steps):
            self.x, self.y = charlm.get_batch(train, self.c.block_size, self.c.batch_size, CPU, gen)
            self.learner.step(self.x, self.y, self.c.lr, i)
        self.step = steps

    def train_step(self, x, y):
        self.learner.step(x, y, self.c.lr, self.step)

    def loss(self) -> float:
        return self.learner.batch_loss(self.x, self.y)

    def capture_inputs(self):
        """A forward/backward on the fixed batch without a step, so the 'recent activations' are this batch's."""
        _, loss = self.model(self.x, self.y)
        loss.backward()
        self.opt.zero_grad(set_to_none=True)


def moments(opt, p):
    return opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


def test_standard_death_and_birth_keep_shapes_reset_moments_and_ages(shakespeare):
    s = Setup(shakespeare, strategy="standard", prune_rate=0.25)
    shapes = {n: p.shape for n, p in s.model.named_parameters()}
    n_params = count_params(s.model)
    mlp = s.model.mlps[0]
    old_in, old_out = mlp.c_fc.weight.clone(), mlp.c_proj.weight.clone()
    assert all(m.abs().sum() > 0 for m in moments(s.opt, mlp.c_fc.weight))

    (rec0, rec1) = s.turnover.event(s.step)
    assert {n: p.shape for n, p in s.model.named_parameters()} == shapes and count_params(s.model) == n_params
    k = round(0.25 * 128)
    assert rec0["n_killed"] == rec0["n_born"] == k == len(rec0["killed"]) == len(rec0["born"])
    dying = torch.tensor([s.lineage.alive[0].index(i) for i in rec0["born"]])
    keep = torch.ones(128, dtype=torch.bool)
    keep[dying] = False
    # the reborn changed, the others did not; a newborn's outgoing weights are its parent's (standard)
    assert not torch.allclose(mlp.c_fc.weight[dying], old_in[dying])
    assert torch.equal(mlp.c_fc.weight[keep], old_in[keep])
    assert torch.equal(mlp.c_proj.weight[:, keep], old_out[:, keep])
    parents = torch.tensor([s.lineage.alive[0].index(p[0]) for p in rec0["parents"]])
    assert torch.equal(mlp.c_proj.weight[:, dying], old_out[:, parents])
    # the killed were the least fit mature neurons: every one at or below the threshold, every survivor above
    assert rec0["fitness_threshold"] <= s.tracker.ema[0][keep].min().item() / (1 - 0.99 ** s.step) + 1e-9
    # reborn rows and columns have zero Adam moments; the others kept theirs
    for m in moments(s.opt, mlp.c_fc.weight):
        assert torch.all(m[dying] == 0) and torch.all(m[keep].abs().sum(dim=1) > 0)
    for m in moments(s.opt, mlp.c_proj.weight):
        assert torch.all(m[:, dying] == 0) and torch.all(m[:, keep].abs().sum(dim=0) > 0)
    # ages reset at birth, lineage records parent and generation
    ages = s.lineage.ages(0, s.step)
    assert torch.all(ages[dying] == 0) and torch.all(ages[keep] == s.step)
    newborn = s.lineage.records[rec0["born"][0]]
    assert newborn["generation"] == 1 and newborn["born"] == s.step and len(newborn["parents"]) == 1
    assert all(s.lineage.records[i]["died"] == s.step for i in rec0["killed"])
    assert torch.all(s.tracker.ema[0][dying] == 0)
    # training goes on, and the maturity rule protects the newborns at the next event
    s.train_step(s.x, s.y)
    s.c.maturity = 5
    (again, _) = s.turnover.event(s.step + 1)
    assert not set(again["killed"]) & set(rec0["born"])


def test_functional_swap_preserves_the_loss_standard_does_not(shakespeare):
    """At the default prune rate, on the batch whose activations the swap used: functional moves the loss by less
    than 0.1% (with or without preservation steps), standard by more than twice that."""
    changes = {}
    for name, overrides in (("standard", {"strategy": "standard"}), ("functional", {"strategy": "functional"}),
                            ("fitted", {"strategy": "functional", "preservation_steps": 50})):
        s = Setup(shakespeare, steps=200, **overrides)
        s.capture_inputs()
        before = s.loss()
        s.turnover.event(s.step)
        changes[name] = abs(s.loss() - before)
    tolerance = 1e-3 * before
    assert changes["functional"] < tolerance and changes["fitted"] < tolerance, changes
    assert changes["standard"] > 2 * tolerance, changes


def test_functional_newborns_start_silent_and_preservation_steps_fit_them(shakespeare):
    s = Setup(shakespeare, strategy="functional", prune_rate=0.25, preservation_steps=0)
    s.capture_inputs()
    bias_before = s.model.mlps[0].c_proj.bias.clone()
    (rec, _) = s.turnover.event(s.step)
    dying = torch.tensor([s.lineage.alive[0].index(i) for i in rec["born"]])
    assert torch.all(s.model.mlps[0].c_proj.weight[:, dying] == 0)
    assert not torch.equal(s.model.mlps[0].c_proj.bias, bias_before)  # the mean moved into the bias

    fit = Setup(shakespeare, strategy="functional", prune_rate=0.25, preservation_steps=50)
    fit.capture_inputs()
    (rec, _) = fit.turnover.event(fit.step)
    assert rec["preservation_mse_after"] < 0.5 * rec["preservation_mse_before"]


def test_growth_adds_exactly_the_expected_parameters_and_still_trains(shakespeare):
    s = Setup(shakespeare, strategy="growth", turnover_rate=0.25, max_width=176, bias=True)
    n_before = count_params(s.model)
    old_fc = s.model.mlps[0].c_fc.weight
    records = s.turnover.event(s.step)
    k = 32  # 0.25 x the initial width 128
    assert [r["width"] for r in records] == [160, 160] and [r["n_born"] for r in records] == [k, k]
    # per layer: k incoming rows of n_embd, k biases, k outgoing columns of n_embd
    assert count_params(s.model) == n_before + 2 * k * (32 + 1 + 32)
    mlp = s.model.mlps[0]
    assert mlp.c_fc.weight.shape == (160, 32) and mlp.c_fc.bias.shape == (160,)
    assert mlp.c_proj.weight.shape == (32, 160) and torch.all(mlp.c_proj.weight[:, 128:] == 0)
    # the optimizer holds the grown tensors (not the old ones), their moments grown with zeros
    held = {id(p) for g in s.opt.param_groups for p in g["params"]}
    assert id(mlp.c_fc.weight) in held and id(old_fc) not in held and old_fc not in s.opt.state
    for m in moments(s.opt, mlp.c_proj.weight):
        assert m.shape == (32, 160) and torch.all(m[:, 128:] == 0) and m[:, :128].abs().sum() > 0
    assert len(s.lineage.alive[0]) == 160 and s.tracker.ema[0].shape == (160,)
    # forward, backward and an AdamW step work on the grown model, and the new neurons learn
    loss_before = s.loss()
    s.train_step(s.x, s.y)
    assert s.loss() < loss_before and torch.all(mlp.c_proj.weight[:, 128:].abs().sum(dim=0) > 0)
    # growth stops at --max-width
    records = s.turnover.event(s.step + 1)
    assert [r["width"] for r in records] == [176, 176] and s.turnover.event(s.step + 2) == []


def test_hybrid_splits_parents_and_crossover_mixes_two(shakespeare):
    s = Setup(shakespeare, strategy="hybrid", turnover_rate=0.25, mutation_strength=0.0)
    old_out = s.model.mlps[0].c_proj.weight.clone()
    (rec, _) = s.turnover.event(s.step)
    w = s.model.mlps[0].c_proj.weight
    assert w.shape == old_out.shape  # capacity constant
    child = torch.tensor([s.lineage.alive[0].index(i) for i in rec["born"]])
    parent = torch.tensor([s.lineage.alive[0].index(p[0]) for p in rec["parents"]])
    assert torch.allclose(w[:, child] + w[:, parent], old_out[:, parent])  # the parent's output, split in two

    c = Setup(shakespeare, strategy="crossover", prune_rate=0.25, mutation_strength=0.0, crossover="uniform")
    old_in = c.model.mlps[0].c_fc.weight.clone()
    (rec, _) = c.turnover.event(c.step)
    born = torch.tensor([c.lineage.alive[0].index(i) for i in rec["born"]])
    p1 = torch.tensor([c.lineage.alive[0].index(p[0]) for p in rec["parents"]])
    p2 = torch.tensor([c.lineage.alive[0].index(p[1]) for p in rec["parents"]])
    new = c.model.mlps[0].c_fc.weight[born]
    from_1, from_2 = new == old_in[p1], new == old_in[p2]
    assert torch.all(from_1 | from_2) and from_1.float().mean() > 0.3 and from_2.float().mean() > 0.3
    assert all(c.lineage.records[i]["generation"] == 1 for i in rec["born"])


def test_layer_strategy_reborns_the_weakest_layer(shakespeare):
    s = Setup(shakespeare, strategy="layer")
    (rec,) = s.turnover.event(s.step)
    layer = rec["layer"]
    assert rec["n_killed"] == 128 and torch.all(s.lineage.ages(layer, s.step) == 0)
    assert rec["vitality"][layer] == min(rec["vitality"]) and max(rec["vitality"]) == pytest.approx(1.0)
    assert all(torch.all(m == 0) for m in moments(s.opt, s.model.mlps[layer].c_fc.weight))


@pytest.mark.parametrize("fitness", ["grad_activation", "activation", "utility", "weight_magnitude"])
def test_fitness_is_the_documented_quantity(shakespeare, fitness):
    s = Setup(shakespeare, steps=0, strategy="standard", fitness=fitness, fitness_decay=0.9)
    _, train = shakespeare
    x, y = charlm.get_batch(train, 32, 8, CPU, torch.Generator().manual_seed(5))
    seen = {}
    hook = s.model.mlps[0].gelu.register_forward_hook(lambda m, a, h: seen.update(h=h) or h.retain_grad())
    _, loss = s.model(x, y)
    loss.backward()
    hook.remove()
    h, g = seen["h"].detach(), seen["h"].grad
    mlp = s.model.mlps[0]
    expected = {"grad_activation": (g * h).abs().mean(dim=(0, 1)),
                "activation": h.abs().mean(dim=(0, 1)),
                "utility": h.abs().mean(dim=(0, 1)) * mlp.c_proj.weight.abs().sum(dim=0),
                "weight_magnitude": mlp.c_fc.weight.norm(dim=1) * mlp.c_proj.weight.norm(dim=0)}[fitness]
    # one tracked step, bias-corrected by age 1: the step's own value
    assert torch.allclose(s.tracker.scores(0, torch.ones(128, dtype=torch.long)), expected.detach(), rtol=1e-4)


def test_cli_run_records_events_lineage_history_and_sample(nlab, tmp_path):
    out = tmp_path / "run"
    r = nlab("apoptosis", *TINY_CLI, "--strategy", "functional", "--preservation-steps", "10", "--max-iters", "120",
             "--interval", "40", "--maturity", "20", "--spike-window", "10", "--eval-interval", "60",
             "--sample", "40", "--temperature", "0", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["primary"] == "val_loss" and m["run_dir"] == str(out)
    assert m["n_events"] == 2 and m["neurons_killed"] == m["neurons_born"] == 2 * 2 * round(0.05 * 128)
    assert m["val_tokens"] == (111540 - 1) // 32 * 32 and 0 < m["val_loss"] < 4.2
    assert len(m["sample"]) == 40 and "sample" in r.stderr and "val loss" in r.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [40, 80]
    for e in events:
        assert e["window_after"] == 10 and e["spike_factor"] == pytest.approx(e["peak_after"] / e["loss_before"])
        assert [layer["layer"] for layer in e["layers"]] == [0, 1] and e["layers"][0]["fitness_threshold"] >= 0
    assert m["mean_spike_factor"] == pytest.approx(sum(e["spike_factor"] for e in events) / 2)
    lineage = json.loads((out / "lineage.json").read_text())
    assert len(lineage["neurons"]) == 256 + m["neurons_born"] and sum(m["age_histogram"]["counts"]) == 256
    assert sorted(i for layer in lineage["alive"] for i in layer) == sorted(
        n["id"] for n in lineage["neurons"] if n["died"] is None)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if h["split"] == "val"] == [0, 60, 120]
    assert {h["stage"] for h in history} == {"gen0", "gen1", "gen2"}
    assert (out / "checkpoints" / "ckpt.pt").is_file()
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"
    from phases import registry  # every number it writes is one the registry lets seed-sweep select or report

    numeric = [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert [k for k in numeric if not registry.get("apoptosis").writes_metric(k)] == []
    # the history feeds analyze-history, which sees the events as stage boundaries
    a = nlab("analyze-history", str(out), "--json", "--no-plot")
    assert a.returncode == 0, a.stderr
    assert len(json.loads(a.stdout)["runs"][0]["boundaries"]) == 2


def test_baseline_is_reproducible_and_measures_the_noise_floor(cli, tmp_path):
    runs = []
    for i in range(2):
        code, out, err = cli("apoptosis", *TINY_CLI, "--max-iters", "60", "--interval", "20", "--spike-window", "5",
                             "--eval-interval", "60", "--out", str(tmp_path / f"r{i}"), "--json")
        assert code == 0, err
        runs.append(json.loads(out))
    assert runs[0]["val_loss"] == runs[1]["val_loss"]
    assert runs[0]["n_events"] == 0 and len(runs[0]["spike_factors"]) == 2
    assert runs[0]["spike_basis"].startswith("no events") and not (tmp_path / "r0" / "events.jsonl").exists()


@pytest.mark.parametrize("args, expect", [
    (["--prune-rate", "0.6"], "--prune-rate 0.6: must be in (0, 0.5]"),
    (["--prune-rate", "0"], "--prune-rate 0.0: must be in (0, 0.5]"),
    (["--interval", "0"], "--interval 0: must be at least 1"),
    (["--strategy", "growth", "--max-width", "256"], "--max-width 256 is below the MLPs' current width (512"),
    (["--block-size", "200000"], "--block-size 200000 is larger than tinyshakespeare's val text"),
    (["--fitness", "loss"], "Invalid value for '--fitness': Value error, 'loss' is not one of"),
    (["--strategy", "mitosis"], "Invalid value for '--strategy': Value error, 'mitosis' is not one of"),
    (["--strategy", "standard", "--preservation-steps", "5"], "--preservation-steps applies to --strategy functional"),
    (["--strategy", "standard", "--interval", "3000"], "no event would happen"),
    (["--dataset", "wikitext3"], "'wikitext3' is not one of 'tinyshakespeare', 'wikitext2'"),
    (["--dataset", "digits"], "'digits' is not one of 'tinyshakespeare', 'wikitext2'"),  # not char-level text
])
def test_bad_input_exits_2_and_writes_nothing(cli, nlab_home, args, expect):
    code, out, err = cli("apoptosis", *args)
    assert code == 2 and expect in " ".join(err.replace("│", " ").split()), err  # choices: click's boxed error
    assert out == "" and not (nlab_home / "logs").exists() and not (nlab_home / "checkpoints").exists()


def test_non_finite_loss_exits_1_with_failed_manifest_and_checkpoint_kept(cli, nlab_home):
    code, out, err = cli("apoptosis", *TINY_CLI, "--max-iters", "50", "--eval-interval", "5", "--lr", "1e6",
                         "--min-lr", "1e6", "--warmup-iters", "0", "--grad-clip", "0", "--name", "diverge")
    assert code == 1 and "non-finite loss" in err
    (run_dir,) = (nlab_home / "logs" / "apoptosis").iterdir()
    assert f"the last good checkpoint (step" in err and f"--resume {run_dir}" in " ".join(err.split())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "non-finite loss" in manifest["exit_reason"]
    ckpt = torch.load(nlab_home / "checkpoints" / "apoptosis" / run_dir.name / "ckpt.pt", weights_only=True)
    step = int(manifest["exit_reason"].split("at step ")[1].split(":")[0])
    assert ckpt["step"] % 5 == 0 and ckpt["step"] <= step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


# --- --resume: a killed run continues exactly ----------------------------------------------------------------------
RESUME_CLI = [*TINY_CLI, "--max-iters", "160", "--eval-interval", "40", "--interval", "30", "--spike-window", "12",
              "--maturity", "10", "--log-interval", "5", "--deterministic"]
TIMINGS = {"wall_time_s", "train_time_s", "step_time_ms_mean", "step_time_ms_median", "event_time_s", "time_ms",
           "run_dir", "events_file", "lineage_file", "val_blocks_file"}


def comparable(obj):
    """A run's records without what may differ between two runs of the same work: timings and paths."""
    if isinstance(obj, dict):
        return {k: comparable(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [comparable(v) for v in obj]
    return obj


def run_records(run_dir) -> dict:
    files = {}
    for name in ("history.jsonl", "events.jsonl"):
        path = run_dir / name
        files[name] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else None
    for name in ("lineage.json", "val_block_losses.json", "metrics.json"):
        files[name] = json.loads((run_dir / name).read_text())
    return comparable(files)


def kill_after_first_checkpoint(args, run_dir, past_step: int) -> None:
    """Start the installed `nlab` and SIGKILL it once it has written a checkpoint and logged training past
    `past_step` (so that records logged after the checkpoint must be cut on resume)."""
    from conftest import kill_when

    history = run_dir / "history.jsonl"
    kill_when([*args, "--out", str(run_dir)], lambda: (run_dir / "checkpoints" / "ckpt.pt").exists()
              and history.exists() and any(json.loads(line)["step"] > past_step
                                           for line in history.read_text().splitlines()[:-1]))
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize("strategy, extra", [
    ("none", []), ("growth", []),
    ("layer", ["--layer-schedule", "depth", "--initial-vitality", "0.5"]),  # MLPs moved between blocks
    ("crossover", ["--crossover", "random", "--select", "orthogonal"]),
], ids=["none", "growth", "layer-depth", "crossover-random-orthogonal"])
def test_killed_run_resumes_to_exactly_the_uninterrupted_result(cli, tmp_path, strategy, extra):
    args = [*RESUME_CLI, "--strategy", strategy, *(["--turnover-rate", "0.25"] if strategy != "layer" else []),
            *extra]
    code, _, err = cli("apoptosis", *args, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    killed = tmp_path / "killed"
    # killed past step 50: after the checkpoint at 40, with training points, and for growth the event at 30
    # (pending at the checkpoint, its window closing at 42), logged after it
    kill_after_first_checkpoint(["apoptosis", *args], killed, past_step=50)
    ckpt = torch.load(killed / "checkpoints" / "ckpt.pt", weights_only=True)
    assert ckpt["step"] in (40, 80, 120) and len(ckpt["losses"]) == ckpt["step"]
    # the baseline is resumed with all its options repeated; growth with --resume alone (options from the run)
    code, out, err = cli("apoptosis", *(args if strategy == "none" else []), "--resume", str(killed), "--json")
    assert code == 0, err
    assert f"resuming {killed} from step {ckpt['step']}" in " ".join(err.split())
    whole, resumed = run_records(tmp_path / "whole"), run_records(killed)
    assert resumed == whole  # metrics, history, events, lineage and per-block losses: nothing lost, nothing twice
    assert json.loads(out)["val_loss"] == whole["metrics.json"]["val_loss"]
    if strategy == "growth":
        assert whole["metrics.json"]["mlp_widths"] == [256, 256] and whole["metrics.json"]["n_events"] == 5
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumes"][0]["previous_status"] == "running"
    # a completed run is not resumed again: it says where its results are
    code, _, err = cli("apoptosis", "--resume", str(killed))
    assert code == 2 and f"already completed; its results are in {killed / 'metrics.json'}" in " ".join(err.split())


def test_resume_refuses_other_options_another_phase_and_a_run_without_checkpoint(cli, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = cli("apoptosis", *TINY_CLI, "--max-iters", "10", "--eval-interval", "5", "--out", str(run_dir))
    assert code == 0, err
    (run_dir / "metrics.json").unlink()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))  # as if killed
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for args, expect in (
            (["--max-iters", "20"], "these differ: --max-iters 20 (the run's: 10)"),
            (["--strategy", "standard", "--interval", "5"],
             "--strategy 'standard' (the run's: 'none'), --interval 5 (the run's: 500)"),
            (["--seed", "1", "--eval-interval", "5"], "--seed 1 (the run's: 1337)"),
            (["--out", str(tmp_path / "x")], "--out and --name do not apply"),
    ):
        code, _, err = cli("apoptosis", *args, "--resume", str(run_dir))
        assert code == 2 and expect in " ".join(err.split()), err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # nothing written
    (run_dir / "checkpoints" / "ckpt.pt").unlink()
    code, _, err = cli("apoptosis", "--resume", str(run_dir))
    assert code == 2 and "no checkpoint" in err and "before its first evaluation" in " ".join(err.split()), err
    code, _, err = cli("analyze-history", str(run_dir), "--no-plot", "--out", str(tmp_path / "hist"))
    assert code == 0, err
    code, _, err = cli("apoptosis", "--resume", str(tmp_path / "hist"))
    assert code == 2 and "is a 'analyze-history' run, not 'apoptosis'" in " ".join(err.split()), err
    code, _, err = cli("apoptosis", "--resume", str(tmp_path / "nowhere"))
    assert code == 2 and "not an nlab run folder" in err
