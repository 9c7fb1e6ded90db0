"""The ``scarce ensemble`` command: combine several models' predictions files.

Members: the base model is one of the M voters (as in Kim et al. 2020). If ``--base``
is also listed in ``--members`` it counts once, at its place in the list; otherwise it
is added as the first member. A file listed twice is an error (it would vote twice).

Methods:
- ``plurality``: the base model's answer where its top probability >= threshold,
  else the members' plurality vote (``plurality_vote``).
- ``soft``: argmax of the members' mean probabilities.
- ``weighted``: argmax of the weighted mean. Weights are ``--weights`` (one per member
  in ensemble order: the base first when it was added, then ``--members``), or, when
  absent, each member's top-1 accuracy on the labelled validation predictions.

``--threshold auto`` picks the plurality threshold on labelled validation predictions
(``--val-base``/``--val-members``: the same models, in the same order as ``--base`` and
``--members``, predicting a held-out labelled set) with ``choose_threshold``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scarce.errors import UserError
from scarce.inference.predictions import (
    Predictions,
    align_predictions,
    load_predictions,
    metadata_array,
    write_predictions_csv,
)
from scarce.inference.voting import choose_threshold, oracle_accuracy, plurality_vote, soft_vote
from scarce.io import atomic_paths

METHODS = ("plurality", "soft", "weighted")
Log = Callable[[str], None]


def _ensemble_order(base: str, members: Sequence[str]) -> tuple[list[str], int]:
    """Member paths in voting order and the base's index in it (see module docstring)."""
    real = [os.path.realpath(m) for m in members]
    for i, m in enumerate(members):
        if real[i] in real[:i]:
            raise UserError(f"{m} is listed twice in --members; each model votes once")
    if os.path.realpath(base) in real:
        return list(members), real.index(os.path.realpath(base))
    return [base, *members], 0


def _val_order(base: str, members: Sequence[str], val_base: str | None, val_members: Sequence[str]) -> list[str]:
    """Validation files paired with ``_ensemble_order(base, members)``, by position."""
    if len(val_members) != len(members):
        raise UserError(
            f"--val-members has {len(val_members)} files but --members has {len(members)}; pair them in order"
        )
    order, base_index = _ensemble_order(base, members)
    if len(order) > len(members):  # the base was added first: its val file comes from --val-base
        if val_base is None:
            raise UserError(f"{base} is not in --members, so --val-base is needed for its validation predictions")
        return [str(val_base), *map(str, val_members)]
    paired = str(val_members[base_index])
    if val_base is not None and os.path.realpath(val_base) != os.path.realpath(paired):
        raise UserError(
            f"--base is --members[{base_index}], so --val-base should be "
            f"--val-members[{base_index}] ({paired}), got {val_base}"
        )
    return [str(v) for v in val_members]


def _load_stack(paths: Sequence[str], base_index: int) -> tuple[Predictions, np.ndarray]:
    """Load the files into one float32 ``[M, N, C]`` array, rows in the base's id order."""
    base = load_predictions(paths[base_index])
    stack = np.empty((len(paths), *base.probs.shape), dtype=np.float32)
    stack[base_index] = base.probs
    base.probs = stack[base_index]  # a view: the base's own copy can be freed
    for i, path in enumerate(paths):
        if i != base_index:  # one member at a time: peak memory is the stack + one file
            (member,) = align_predictions(base, [load_predictions(path)], [paths[base_index], path])
            stack[i] = member.probs
    return base, stack


def _accuracy(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    return float((pred[mask] == targets[mask]).mean())


def _validation(
    base_path: str,
    members: list[str],
    val_base: Any,
    val_members: Sequence[Any] | None,
    need_threshold: bool,
    need_weights: bool,
    log: Log,
    show_thresholds: bool = False,
) -> dict[str, Any]:
    """Threshold (and table), per-member accuracies and classes from labelled validation files.

    Reads nothing (returns ``{}``) unless the threshold or the weights come from them.
    """
    if not val_members or not (need_threshold or need_weights):
        return {}
    vb = None if val_base is None else str(val_base)
    val_paths = _val_order(base_path, members, vb, [str(v) for v in val_members])
    base_index = _ensemble_order(base_path, members)[1]
    vbase, vstack = _load_stack(val_paths, base_index)
    if not vbase.labelled.all():
        unknown = int((~vbase.labelled).sum())
        name = val_paths[base_index]
        raise UserError(f"{name}: {unknown} samples have no label (-1); validation predictions must be labelled")
    out: dict[str, Any] = {"classes": vbase.classes}
    if need_threshold:
        best, table = choose_threshold(vbase.probs, vstack, vbase.targets)
        out["threshold"], out["threshold_table"] = best, [row._asdict() for row in table]
        chosen = next(row for row in table if row.threshold == best)
        log(
            f"threshold auto: {best:.2f} (val accuracy {chosen.accuracy:.4f}, replaces {chosen.replaced:.2%} of the "
            f"base's val answers; every threshold tried: --show-thresholds, or threshold_table in the metadata)"
        )
        if show_thresholds:
            log("| threshold | val accuracy | replaced |\n| --- | --- | --- |")
            for row in table:
                mark = " <- chosen" if row.threshold == best else ""
                log(f"| {row.threshold:.2f} | {row.accuracy:.4f} | {row.replaced:.2%} |{mark}")
    if need_weights:
        y, mask = vbase.targets, vbase.labelled
        out["val_accuracy"] = [_accuracy(vstack[i].argmax(axis=1), y, mask) for i in range(len(vstack))]
    return out


def _parse_threshold(threshold: float | str) -> float | str:
    if isinstance(threshold, str) and threshold.strip().lower() == "auto":
        return "auto"
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise UserError(f"--threshold must be a number >= 0 or 'auto', got {threshold!r}") from None
    if math.isnan(value) or value < 0:
        raise UserError(f"--threshold must be a number >= 0 or 'auto', got {threshold!r}")
    return value


def _resolve_weights(weights: Sequence[float] | None, val: dict[str, Any], order: list[str]) -> list[float]:
    if weights is None:
        acc = val["val_accuracy"]
        if sum(acc) <= 0:
            raise UserError("every member has validation accuracy 0; cannot weight by accuracy")
        return [a / sum(acc) for a in acc]
    w = [float(x) for x in weights]
    if len(w) != len(order):
        raise UserError(f"--weights has {len(w)} values for {len(order)} members ({', '.join(order)})")
    if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise UserError(f"--weights must be finite, non-negative and not all zero, got {w}")
    return [x / sum(w) for x in w]


def _check_request(method: str, threshold: float | str, weights: Any, has_val: bool, order: list[str]) -> None:
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if len(order) < 2:
        raise UserError("--members needs at least one file besides --base")
    if threshold == "auto" and method == "plurality" and not has_val:
        raise UserError("--threshold auto needs labelled validation predictions: --val-base and --val-members")
    if method == "weighted" and weights is None and not has_val:
        raise UserError("--method weighted needs --weights, or --val-members to weight by validation accuracy")


def run_ensemble(
    base_path: str | os.PathLike,
    member_paths: Sequence[str | os.PathLike],
    method: str = "plurality",
    threshold: float | str = 0.7,
    val_base: str | os.PathLike | None = None,
    val_members: Sequence[str | os.PathLike] | None = None,
    weights: Sequence[float] | None = None,
    *,
    out_path: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    log: Log = print,
    show_thresholds: bool = False,
) -> dict[str, Any]:
    """Combine predictions files; write ``out_path`` (and ``csv_path``); return a report.

    ``out_path`` holds ``pred`` int64 ``[N]``, ``ids``, ``classes``, ``targets`` (the
    base file's), ``metadata`` (JSON: method, threshold, base, members, weights, ...) and,
    for ``soft``/``weighted`` only, ``probs`` float32 ``[N, C]``. The CSV's confidence and
    top-k come from the soft vote (the weighted one for ``weighted``).

    The report has ``n``, ``replaced`` (answers that differ from the base model's) and,
    where the base file has labels, ``accuracy`` of base, plurality, soft (and weighted)
    votes and the oracle (any member right), on the labelled samples.
    """
    threshold = _parse_threshold(threshold)
    members = [str(m) for m in member_paths]
    order, base_index = _ensemble_order(str(base_path), members)
    _check_request(method, threshold, weights, bool(val_members), order)
    need_weights = method == "weighted" and weights is None
    val = _validation(
        str(base_path), members, val_base, val_members, threshold == "auto", need_weights, log, show_thresholds
    )
    threshold_used = float(val.get("threshold", 0.7 if threshold == "auto" else threshold))
    w = _resolve_weights(weights, val, order) if method == "weighted" else None

    base, stack = _load_stack(order, base_index)  # after validation: one stack in memory at a time
    if "classes" in val and (len(val["classes"]) != len(base.classes) or (val["classes"] != base.classes).any()):
        raise UserError(f"validation files have different classes from {base.name}")
    answers, final_probs = _combine(base, stack, method, threshold_used, w)
    pred = answers[method]
    replaced = int((pred != answers["base"]).sum())

    meta: dict[str, Any] = {
        "method": method,
        "base": order[base_index],
        "members": order,
        "weights": w,
        "threshold": threshold_used if method == "plurality" else None,
        "threshold_source": "auto" if "threshold" in val else "given",
    }
    meta.update({k: val[k] for k in ("threshold_table",) if k in val})
    _write_outputs(base, pred, final_probs, {**meta, "replaced": replaced}, out_path, csv_path)
    report = {
        **meta,
        "n": len(pred),
        "replaced": replaced,
        "replaced_fraction": replaced / max(1, len(pred)),
        "plurality_threshold": threshold_used,
        "out": str(out_path),
        "csv": csv_path and str(csv_path),
    }
    if base.labelled.any():
        y, mask = base.targets, base.labelled
        report["labelled"] = int(mask.sum())
        report["accuracy"] = {rule: _accuracy(answer, y, mask) for rule, answer in answers.items()}
        report["accuracy"]["oracle"] = oracle_accuracy(stack[:, mask], y[mask])
    _print_report(report, log)
    return report


def _write_outputs(
    base: Predictions,
    pred: np.ndarray,
    final_probs: np.ndarray,
    meta: dict[str, Any],
    out_path: str | os.PathLike,
    csv_path: str | os.PathLike | None,
) -> None:
    """Write the ensemble's ``.npz`` (``probs`` only for soft/weighted) and optional CSV,
    replaced together (:func:`scarce.io.atomic_paths`): never a new npz beside a stale CSV."""
    arrays = dict(
        pred=pred.astype(np.int64),
        ids=base.ids,
        classes=base.classes,
        targets=base.targets,
        metadata=metadata_array(meta),
    )
    if meta["method"] != "plurality":
        arrays["probs"] = final_probs.astype(np.float32, copy=False)
    targets = [out_path] + ([csv_path] if csv_path is not None else [])
    with atomic_paths(targets) as tmps:
        with open(tmps[0], "wb") as f:  # a file object: numpy adds no ".npz" suffix
            np.savez(f, **arrays)
        if csv_path is not None:
            shown = Predictions(final_probs, base.ids, base.classes, base.targets, meta, str(out_path))
            write_predictions_csv(tmps[1], shown, labels=arrays["pred"], atomic=False)


def _combine(
    base: Predictions, stack: np.ndarray, method: str, threshold: float, weights: list[float] | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each rule's answers ``{rule: int [N]}`` (base, plurality, soft, and weighted when asked)
    and the probabilities ``[N, C]`` the method reports (the weighted mean for ``weighted``)."""
    soft = soft_vote(stack).numpy()
    answers = {
        "base": base.probs.argmax(axis=1),
        "plurality": plurality_vote(base.probs, stack, threshold=threshold).numpy(),
        "soft": soft.argmax(axis=1),
    }
    if method != "weighted":
        return answers, soft
    weighted = soft_vote(stack, weights).numpy()
    answers["weighted"] = weighted.argmax(axis=1)
    return answers, weighted


def _print_report(report: dict[str, Any], log: Log) -> None:
    """Print the report as a few lines and a Markdown table."""
    thr = report["threshold"]
    rule = f"threshold {thr:g} ({report['threshold_source']})" if thr is not None else "no threshold"
    log(f"ensemble: {len(report['members'])} models, {report['n']} samples, method {report['method']}, {rule}")
    if report.get("weights"):
        pairs = zip(report["members"], report["weights"])
        log("weights: " + ", ".join(f"{Path(m).name}={x:.3f}" for m, x in pairs))
    if "accuracy" in report:
        names = {
            "base": f"base ({Path(report['base']).name})",
            "plurality": f"plurality vote (threshold {report['plurality_threshold']:g})",
            "soft": "soft vote",
            "weighted": "weighted soft vote",
            "oracle": "oracle (any member right)",
        }
        log(f"| rule | accuracy ({report['labelled']} labelled) |\n| --- | --- |")
        for key, value in report["accuracy"].items():
            log(f"| {names[key]} | {value:.4f} |")
    log(f"replaced {report['replaced']} of {report['n']} base answers ({report['replaced_fraction']:.2%})")
    log(f"wrote {report['out']}" + (f" and {report['csv']}" if report["csv"] else ""))
