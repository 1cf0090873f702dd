"""Two systems compared on the same items, written once: ewc (each method against naive fine-tuning),
ensemble-vote (the ensemble against its best member) and `eval-gsm8k --compare` (run A against run B) all call
`paired_correctness`; `nlab runs compare` calls it, or `paired_losses` for losses on shared held-out items;
`nlab sweep` compares whole configurations over matched seeds with `against_baseline`.

Input is per-item correctness keyed by item id; only the ids both sides evaluated are compared (the rest are
counted as dropped). Out come the 2x2 counts, both accuracies, the difference A - B with a paired bootstrap 95%
interval (items resampled; phases.core.stats.paired_bootstrap_diff, seed 0), McNemar's exact p-value on the
discordant items, whether the difference is beyond noise, and that verdict as a sentence.

"Beyond noise" means one thing everywhere: McNemar's exact test on the discordant items rejects equal accuracy
(p < alpha), the test made for paired right/wrong outcomes. The bootstrap interval says how large the difference
is; the two agree except at the edge (`bootstrap_beyond_noise` reports whether the interval excludes zero).
Statistics libraries are imported inside the function, so importing this module stays cheap."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence


def paired_correctness(a: Mapping[Hashable, bool], b: Mapping[Hashable, bool], label_a: str = "A",
                       label_b: str = "B", alpha: float = 0.05, seed: int = 0) -> dict:
    """Paired comparison of two systems' per-item correctness over the ids they share (in `a`'s order)."""
    from phases.core import stats

    ids = [k for k in a if k in b]
    x, y = [bool(a[k]) for k in ids], [bool(b[k]) for k in ids]
    n = len(ids)
    only_a = [k for k, u, v in zip(ids, x, y) if u and not v]
    only_b = [k for k, u, v in zip(ids, x, y) if v and not u]
    both = sum(u and v for u, v in zip(x, y))
    nan = float("nan")
    diff, low, high = stats.paired_bootstrap_diff(x, y, seed=seed) if n else (nan, nan, nan)
    p = stats.mcnemar_exact(len(only_a), len(only_b))
    out = {
        "n_shared": n, "n_dropped": len(a) + len(b) - 2 * n, "n_only_in_a": len(a) - n, "n_only_in_b": len(b) - n,
        "both_right": both, "only_a_right": len(only_a), "only_b_right": len(only_b),
        "both_wrong": n - both - len(only_a) - len(only_b), "ids_only_a_right": only_a, "ids_only_b_right": only_b,
        "acc_a": sum(x) / n if n else nan, "acc_b": sum(y) / n if n else nan,
        "diff": diff, "diff_low": low, "diff_high": high, "mcnemar_p": p,
        "beyond_noise": p < alpha, "bootstrap_beyond_noise": n > 0 and stats.beyond_noise(low, high),
    }
    out["verdict"] = verdict(out, label_a, label_b)
    return out


def verdict(c: dict, label_a: str = "A", label_b: str = "B") -> str:
    """The comparison in words, the difference in accuracy points (e.g. 'A is better beyond noise (+3.1 points,
    95% CI [+1.2, +5.0], McNemar p=0.004, n=872)')."""
    if not c["n_shared"]:
        return f"{label_a} and {label_b} share no item: nothing to compare"
    d, lo, hi = (100 * c[k] for k in ("diff", "diff_low", "diff_high"))
    tail = f"McNemar p={c['mcnemar_p']:.3g}, n={c['n_shared']}"
    if not c["beyond_noise"]:
        return (f"{label_a} and {label_b} differ within noise ({label_a} - {label_b} = {d:+.1f} points, 95% CI "
                f"[{lo:+.1f}, {hi:+.1f}], {tail})")
    if d < 0:  # state the winner's advantage as a positive number
        label_a, d, lo, hi = label_b, -d, -hi, -lo
    return f"{label_a} is better beyond noise ({d:+.1f} points, 95% CI [{lo:+.1f}, {hi:+.1f}], {tail})"


def paired_losses(a: Sequence[float], b: Sequence[float], label_a: str = "A", label_b: str = "B",
                  seed: int = 0) -> dict:
    """Paired comparison of two models' losses on the same held-out items (apoptosis's per-block validation
    losses, item i of `a` and `b` being the same text): the mean difference A - B with a paired bootstrap 95%
    interval (items resampled; phases.core.stats.paired_bootstrap_diff, seed 0). Losses are not right/wrong, so
    there is no McNemar here: beyond noise means the interval excludes zero. Lower is better."""
    from phases.core import stats

    if len(a) != len(b):
        raise ValueError(f"paired losses need the same items: {len(a)} against {len(b)}")
    n = len(a)
    nan = float("nan")
    diff, low, high = stats.paired_bootstrap_diff(a, b, seed=seed) if n else (nan, nan, nan)
    out = {"n_shared": n, "mean_a": sum(a) / n if n else nan, "mean_b": sum(b) / n if n else nan,
           "diff": diff, "diff_low": low, "diff_high": high,
           "beyond_noise": n > 0 and stats.beyond_noise(low, high)}
    out["verdict"] = loss_verdict(out, label_a, label_b)
    return out


def loss_verdict(c: dict, label_a: str = "A", label_b: str = "B") -> str:
    """The loss comparison in words, as `verdict` words an accuracy one (e.g. 'B is better beyond noise (0.0123
    lower loss, 95% CI [0.0051, 0.0190], paired bootstrap, n=200)')."""
    if not c["n_shared"]:
        return f"{label_a} and {label_b} share no item: nothing to compare"
    d, lo, hi = c["diff"], c["diff_low"], c["diff_high"]
    tail = f"paired bootstrap, n={c['n_shared']}"
    if not c["beyond_noise"]:
        return (f"{label_a} and {label_b} differ within noise ({label_a} - {label_b} = {d:+.4f} loss, 95% CI "
                f"[{lo:+.4f}, {hi:+.4f}], {tail})")
    if d > 0:  # B has the lower loss; either way the winner's advantage is stated as a positive number
        label_a = label_b
    else:
        d, lo, hi = -d, -hi, -lo
    return f"{label_a} is better beyond noise ({d:.4f} lower loss, 95% CI [{lo:.4f}, {hi:.4f}], {tail})"


def against_baseline(values: Sequence[Mapping[int, float]], baseline: int, lower_is_better: bool,
                     alpha: float = 0.05, power: float = 0.8) -> list[dict | None]:
    """Each configuration against the baseline one, paired by seed: `values[i]` maps seed -> the metric of
    configuration i; only the seeds both finished are compared. Per configuration: the mean difference (i minus
    baseline), Welch's t-test and the exact paired permutation test, both Holm-adjusted across the comparisons,
    the difference the seeds could detect (power 0.8), how many seeds would resolve the observed difference,
    and the verdict. "Beyond noise" is Welch's Holm-adjusted p below alpha: with 3 seeds the permutation test
    cannot go below 0.25, so it is reported as the distribution-free check, not the rule. None for the baseline
    itself (and a note for a configuration sharing fewer than 2 seeds with it)."""
    import numpy as np

    from phases.core import stats

    out: list[dict | None] = []
    for i, v in enumerate(values):
        seeds = sorted(set(v) & set(values[baseline]))
        if i == baseline:
            out.append(None)
            continue
        a, b = np.array([v[s] for s in seeds], float), np.array([values[baseline][s] for s in seeds], float)
        row = {"seeds": seeds, "n": len(seeds)}
        if len(seeds) >= 2:
            sd_a, sd_b = float(a.std(ddof=1)), float(b.std(ddof=1))
            diff = float(a.mean() - b.mean())
            row.update(diff=diff, welch_p=stats.welch_p(a, b), permutation_p=stats.paired_permutation_p(a, b),
                       permutation_floor=2 / 2 ** len(seeds),
                       detectable=stats.detectable_difference(sd_a, sd_b, len(seeds), alpha, power),
                       seeds_to_resolve=stats.seeds_to_resolve(diff, sd_a, sd_b, alpha, power))
        out.append(row)
    done = [r for r in out if r is not None and "diff" in r]
    for key in ("welch_p", "permutation_p"):
        for r, p in zip(done, stats.holm([r[key] for r in done])):
            r[f"{key}_holm"] = p
    sign = -1 if lower_is_better else 1
    for r in out:
        if r is not None:
            r["verdict"] = seed_verdict(r, sign, alpha)
    return out


def seed_verdict(r: dict, sign: int = 1, alpha: float = 0.05) -> str:
    """A comparison over seeds in words: 'better beyond noise', 'worse beyond noise', or 'within noise (3 seeds
    can detect a difference of 0.012; about 40 would resolve the observed -0.003)'. `sign` is -1 for a metric
    where lower is better."""
    if "diff" not in r:
        return f"not compared ({r['n']} seed(s) shared with the baseline; at least 2 needed)"
    if r["welch_p_holm"] < alpha:
        return "better beyond noise" if sign * r["diff"] > 0 else "worse beyond noise"
    need = r["seeds_to_resolve"]
    resolve = (f"about {need} would resolve the observed {r['diff']:+.4g}" if need is not None
               else "no number of seeds resolves a difference of 0" if r["diff"] == 0
               else f"the observed {r['diff']:+.4g} is too small to resolve")
    return f"within noise ({r['n']} seeds can detect a difference of {r['detectable']:.4g}; {resolve})"
