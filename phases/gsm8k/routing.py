"""`eval-gsm8k --route`: LoRA adapters as experts (the lab's Phase 18).

Every adapter is evaluated on every problem (peft's `set_adapter` switches between passes; each pass resumes
window by window from its own file, `adapters/<name>.<part>.jsonl`). Then:
- each adapter's accuracy with its 95% Wilson interval;
- the oracle: a problem counts when any adapter solves it (an upper bound for any router);
- with `--route router|all`, a learned router: one logistic regression per adapter (scikit-learn, on standardised
  features) predicting whether that adapter solves a problem from the BASE model's representation of it (the
  last hidden state, mean-pooled over the problem's own prompt without shots, every adapter disabled), trained on
  `--router-train-n` training problems (of each dataset, drawn with `--seed`) that every adapter also solved or
  not; a problem goes to the adapter with the highest predicted probability (ties: the first given).
Reported: router accuracy, routing accuracy (the chosen adapter solves it, among the problems some adapter solves),
the oracle gap (oracle - router), and the router against the best single adapter (the most accurate on the
evaluated problems, ties the first given: the comparison favours the baseline) with McNemar's exact test
(phases.core.compare.paired_correctness). With several datasets, the same per dataset under `per_dataset`."""

from __future__ import annotations

from typing import Callable

from phases.core.compare import paired_correctness
from phases.gsm8k.items import Item
from phases.gsm8k.metrics import accuracy_keys

PARTS = ("router-train", "eval")


def passes(names: list[str], items: list[Item], router_items: list[Item], model, split: str,
           evaluate: Callable[..., list[dict]]) -> dict[str, dict[str, dict]]:
    """{adapter: {"eval": {id: record}, "router-train": {id: record}}}: each adapter on every problem."""
    out = {}
    for name in names:
        model.set_adapter(name)
        out[name] = {}
        for part, its, part_split in (("eval", items, split), ("router-train", router_items, "train")):
            recs = evaluate(its, file=f"adapters/{name}.{part}.jsonl", stage=f"{name}/{part}",
                            split=part_split) if its else []
            out[name][part] = {r["id"]: r for r in recs}
    return out


def fit_router(features, solved, seed: int) -> list:
    """One classifier per adapter column of `solved` (n x adapters, bool): a fitted pipeline, or the constant
    rate where the column has one value only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = []
    for k in range(solved.shape[1]):
        y = solved[:, k]
        if y.min() == y.max():
            models.append(float(y[0]))
        else:
            models.append(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
                          .fit(features, y))
    return models


def router_probs(models: list, features):
    import numpy as np

    cols = [np.full(len(features), m) if isinstance(m, float) else m.predict_proba(features)[:, 1] for m in models]
    return np.stack(cols, axis=1)


def _summary(ids: list, names: list[str], solved: dict, choice: dict | None) -> dict:
    """Adapter, oracle and (with `choice`) router numbers over `ids`."""
    out = {"n": len(ids)}
    accs = {}
    for name in names:
        out.update(accuracy_keys(f"adapter_{name}", [solved[i][name] for i in ids]))
        accs[name] = out[f"adapter_{name}_acc"]
    best = max(names, key=lambda a: (accs[a], -names.index(a)))
    oracle = {i: any(solved[i].values()) for i in ids}
    out.update({"best_adapter": best, "best_adapter_acc": accs[best], **accuracy_keys("oracle", oracle.values())})
    if choice is None:
        return out
    router = {i: solved[i][choice[i]] for i in ids}
    solvable = [i for i in ids if oracle[i]]
    out.update(accuracy_keys("router", router.values()))
    out.update(accuracy_keys("routing", [router[i] for i in solvable]))
    out["oracle_gap"] = out["oracle_acc"] - out["router_acc"] if ids else float("nan")
    out["router_choices"] = {name: sum(choice[i] == name for i in ids) for name in names}
    c = paired_correctness(router, {i: solved[i][best] for i in ids}, "router", f"adapter {best}")
    out.update({f"router_vs_best_{k}": c[k] for k in ("diff", "diff_low", "diff_high", "mcnemar_p", "beyond_noise",
                                                        "only_a_right", "only_b_right", "verdict")})
    return out


def route(names: list[str], items: list[Item], router_items: list[Item], results: dict, backend, mode: str,
          seed: int) -> tuple[dict, list[dict]]:
    """The metrics of a --route run and its predictions.jsonl records (one per evaluated problem)."""
    import numpy as np

    ids = [it.id for it in items]
    solved = {i: {a: bool(results[a]["eval"][i]["correct"]) for a in names} for i in ids}
    choice, probs, train_metrics = None, None, {}
    if mode != "oracle":
        train_ids = [it.id for it in router_items]
        labels = np.array([[bool(results[a]["router-train"][i]["correct"]) for a in names] for i in train_ids])
        models = fit_router(backend.represent(router_items), labels, seed)
        p = router_probs(models, backend.represent(items))
        probs = {i: dict(zip(names, row.tolist())) for i, row in zip(ids, p)}
        choice = {i: names[int(np.argmax(row))] for i, row in zip(ids, p)}
        fitted = router_probs(models, backend.represent(router_items)).argmax(1)
        train_solved = [bool(labels[r, k]) for r, k in enumerate(fitted)]
        train_metrics = {**accuracy_keys("router_train", train_solved),
                         **accuracy_keys("router_train_oracle", labels.any(1)),
                         "router_train_n_per_adapter": {a: int(labels[:, k].sum()) for k, a in enumerate(names)}}
    metrics = {**_summary(ids, names, solved, choice), **train_metrics, "adapters": names, "route": mode}
    datasets = list(dict.fromkeys(it.dataset for it in items))
    if len(datasets) > 1:
        metrics["per_dataset"] = {d: _summary([it.id for it in items if it.dataset == d], names, solved, choice)
                                  for d in datasets}
    preds = []
    for it in items:
        per = {a: {k: results[a]["eval"][it.id][k] for k in ("prediction", "correct", "strict", "flexible")}
               for a in names}
        oracle = any(solved[it.id].values())
        rec = {"id": it.id, "dataset": it.dataset, "split": results[names[0]]["eval"][it.id]["split"],
               "target": it.gold, "adapters": per, "solved_by": [a for a in names if solved[it.id][a]],
               "oracle": oracle}
        if choice is None:  # the oracle's answer: the first adapter that solves it, else the best adapter's
            pick = next((a for a in names if solved[it.id][a]), metrics["best_adapter"])
            rec.update(prediction=per[pick]["prediction"], correct=oracle)
        else:
            pick = choice[it.id]
            rec.update(route=pick, router_probs=probs[it.id], prediction=per[pick]["prediction"],
                       correct=solved[it.id][pick])
        preds.append(rec)
    return metrics, preds
