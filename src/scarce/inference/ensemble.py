"""The ``scarce ensemble`` command: combine several models' predictions files.

Members: the base model is one of the M voters (as in Kim et al. 2020). If ``--base``
is also listed in ``--members`` it counts once, at its place in the list; otherwise it
is added as the first member. A file listed twice is an error (it would vote twice).
``soft`` and ``weighted`` need no ``--base`` (for them it is just one more member): without
one, the first member gives the ids and labels, and the report has no base or plurality row.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scarce.errors import UserError
from scarce.inference.ensemble_members import Log, ensemble_order, load_stack, top1_accuracy, validation_choices
from scarce.inference.predictions import Predictions, metadata_array, write_npz, write_predictions_csv
from scarce.inference.voting import oracle_accuracy, plurality_vote, soft_vote
from scarce.io import atomic_paths

METHODS = ("plurality", "soft", "weighted")


def parse_threshold(threshold: float | str) -> float | str:
    """A plurality threshold as given (a number, or "auto" in any case) -> a float or "auto"; a
    value outside [0, 1.01] is one line naming ``--threshold``."""
    if isinstance(threshold, str) and threshold.strip().lower() == "auto":
        return "auto"
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    # above 1 is meaningful (a top probability never reaches it: pure plurality, as auto may choose
    # 1.01), but a typo such as 7 for 0.7 is likelier: accept only up to the 1.01 auto can print
    if not 0 <= value <= 1.01:
        raise UserError(
            f"--threshold: expected a number from 0 to 1 (up to 1.01: never keep the base's answer, pure "
            f"plurality) or 'auto', got {threshold!r}"
        )
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


def _check_base(method: str, base_given: bool, val_base: Any) -> None:
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "plurality" and not base_given:
        raise UserError(
            "--method plurality needs --base (the model whose answer is kept where its top probability >= "
            "--threshold); soft and weighted do not"
        )
    if val_base is not None and not base_given:
        raise UserError("--val-base pairs with --base; without --base give only --val-members")


def _check_request(
    method: str, threshold: float | str, weights: Any, has_val: bool, order: list[str], base_given: bool
) -> None:
    if len(order) < 2:
        raise UserError(
            "--members needs at least one file besides --base" if base_given else "--members needs at least two files"
        )
    if threshold == "auto" and method == "plurality" and not has_val:
        raise UserError("--threshold auto needs labelled validation predictions: --val-base and --val-members")
    if method == "weighted" and weights is None and not has_val:
        raise UserError("--method weighted needs --weights, or --val-members to weight by validation accuracy")


def _check_out_is_new(out_path: str | os.PathLike, inputs: list[Any]) -> None:
    """``--out`` naming one of the predictions files voted on would replace it with the vote."""
    for path in inputs:
        if path is not None and os.path.realpath(path) == os.path.realpath(out_path):
            raise UserError(f"--out {out_path}: is {path}, one of the ensemble's inputs; give a new file name")


def check_vote_options(method: str, threshold: float | str | None, out_path: str | os.PathLike, inputs: list) -> None:
    """What :func:`run_ensemble` refuses of the options alone, checked before any member is predicted."""
    _threshold_request(method, threshold)
    _check_out_is_new(out_path, inputs)


def _threshold_request(method: str, threshold: float | str | None) -> tuple[float | str, str | None]:
    """The plurality threshold asked for (a number, or "auto"; 0.7 when not given) and where it comes
    from: "default", "given" or "auto" (None for soft and weighted votes, which have no threshold)."""
    if threshold is not None and method != "plurality":
        raise UserError(f"--threshold applies to --method plurality; a {method} vote has none")
    parsed = parse_threshold(0.7 if threshold is None else threshold)
    if method != "plurality":
        return parsed, None
    return parsed, "default" if threshold is None else "auto" if parsed == "auto" else "given"


def _metadata(
    method: str,
    order: list[str],
    base: str | None,
    weights: list[float] | None,
    weights_given: bool,
    threshold: float,
    threshold_source: str | None,
) -> dict[str, Any]:
    """What the ensemble file and the report record of how it voted."""
    # absolute: `scarce report --ensemble` reads the members back from any working directory
    return {
        "method": method,
        "base": base and os.path.abspath(base),
        "members": [os.path.abspath(m) for m in order],
        "weights": weights,
        "weights_source": None if weights is None else "given" if weights_given else "val",
        "threshold": threshold if method == "plurality" else None,
        "threshold_source": threshold_source,
    }


def validation_needs(method: str, threshold: float | str | None, weights: Sequence[float] | None) -> tuple[bool, bool]:
    """Whether the plurality threshold, and whether the weights, are chosen on validation predictions."""
    auto = threshold is not None and parse_threshold(threshold) == "auto"  # "AUTO" too, as run_ensemble reads it
    return auto and method == "plurality", method == "weighted" and weights is None  # soft / weighted: no threshold


def run_ensemble(
    base_path: str | os.PathLike | None,
    member_paths: Sequence[str | os.PathLike],
    method: str = "plurality",
    threshold: float | str | None = None,
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
    votes and the oracle (any member right), on the labelled samples. ``base_path`` may be None
    for ``soft``/``weighted``: then ``base`` and ``replaced`` are None and accuracy has no base
    or plurality entry.
    """
    threshold, threshold_source = _threshold_request(method, threshold)
    members = [str(m) for m in member_paths]
    _check_base(method, base_path is not None, val_base)
    reference = str(base_path) if base_path is not None else members[0] if members else ""
    order, base_index = ensemble_order(reference, members)
    _check_request(method, threshold, weights, bool(val_members), order, base_path is not None)
    _check_out_is_new(out_path, [*order, *(val_members or []), val_base])
    need_threshold, need_weights = validation_needs(method, threshold, weights)
    val = validation_choices(
        reference, members, val_base, val_members, need_threshold, need_weights, log, show_thresholds
    )
    threshold_used = float(val.get("threshold", 0.7 if threshold == "auto" else threshold))
    w = _resolve_weights(weights, val, order) if method == "weighted" else None

    base, stack = load_stack(order, base_index)  # after validation: one stack in memory at a time
    if "classes" in val and (len(val["classes"]) != len(base.classes) or (val["classes"] != base.classes).any()):
        raise UserError(f"validation files have different classes from {base.name}")
    answers, final_probs = _combine(base, stack, method, threshold_used, w)
    pred = answers[method]
    replaced = int((pred != answers["base"]).sum()) if base_path is not None else None
    if base_path is None:  # the first member only stood in for a base: no answer of its own to report
        answers = {rule: answer for rule, answer in answers.items() if rule not in ("base", "plurality")}

    base_file = order[base_index] if base_path is not None else None
    meta = _metadata(method, order, base_file, w, weights is not None, threshold_used, threshold_source)
    meta.update({k: val[k] for k in ("threshold_table",) if k in val})
    _write_outputs(base, pred, final_probs, {**meta, "replaced": replaced}, out_path, csv_path)
    report = {
        **meta,
        "n": len(pred),
        "replaced": replaced,
        "replaced_fraction": None if replaced is None else replaced / max(1, len(pred)),
        "plurality_threshold": threshold_used,
        "out": str(out_path),
        "csv": csv_path and str(csv_path),
        **_accuracies(base, stack, answers),
    }
    _print_report(report, log)
    return report


def describe_weights(members: Sequence[str], weights: Sequence[float], source: str | None) -> tuple[str, str]:
    """``("weights (chosen on val)", "a.npz=0.600, b.npz=0.400")``: a weighted vote's weights by member."""
    shown = ", ".join(f"{Path(m).name}={w:.3f}" for m, w in zip(members, weights))
    return f"weights ({'given' if source == 'given' else 'chosen on val'})", shown


def _accuracies(base: Predictions, stack: np.ndarray, answers: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each rule's top-1 and the oracle's on the labelled samples (nothing without labels)."""
    if not base.labelled.any():
        return {}
    y, mask = base.targets, base.labelled
    accuracy = {rule: top1_accuracy(answer, y, mask) for rule, answer in answers.items()}
    return {"labelled": int(mask.sum()), "accuracy": {**accuracy, "oracle": oracle_accuracy(stack[:, mask], y[mask])}}


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
        write_npz(tmps[0], arrays)
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
        log(": ".join(describe_weights(report["members"], report["weights"], report.get("weights_source"))))
    if "accuracy" in report:
        names = {
            "base": f"base ({Path(report['base'] or '').name})",  # no base row without a base
            "plurality": f"plurality vote (threshold {report['plurality_threshold']:g})",
            "soft": "soft vote",
            "weighted": "weighted soft vote",
            "oracle": "oracle (any member right)",
        }
        log(f"| rule | accuracy ({report['labelled']} labelled) |\n| --- | --- |")
        for key, value in report["accuracy"].items():
            log(f"| {names[key]} | {value:.4f} |")
    if report["replaced"] is not None:
        log(f"replaced {report['replaced']} of {report['n']} base answers ({report['replaced_fraction']:.2%})")
    log(f"wrote {report['out']}" + (f" and {report['csv']}" if report["csv"] else ""))
