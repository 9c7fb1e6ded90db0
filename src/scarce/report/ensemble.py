"""``scarce report --ensemble final.npz``: what the vote did.

Reads the ensemble's output (``run_ensemble``'s ``final.npz``: ``pred``, ``ids``,
``classes``, ``targets``, ``metadata``) and the members' predictions files (from
``--members``, else the paths recorded in the metadata; the base is the one the
metadata names). Shows how many base answers were replaced and whether that fixed
or broke them, accuracy per base-confidence bin for the base model and the final
answer, and, with labels, the plurality-vote threshold curve (``choose_threshold``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scarce.errors import UserError
from scarce.inference import align_predictions, choose_threshold, load_predictions
from scarce.inference.ensemble import describe_weights
from scarce.inference.predictions import Predictions
from scarce.inference.voting import oracle_accuracy
from scarce.report import plots
from scarce.report.html import Figures, Section, key_values, paragraph, table, write_page

FINAL_KEYS = ("pred", "ids", "classes", "targets", "metadata")
#: Thresholds of the curve: 0 (base only) to 1 by 0.02, and 1.01 (pure plurality).
CURVE_THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(51)) + (1.01,)


def read_final(path: str | Path) -> dict:
    """The ensemble output file as plain arrays (no pickles) and its metadata dict."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in FINAL_KEYS if k not in z.files]
            if missing:
                raise UserError(
                    f"{path}: not a scarce ensemble output (missing {', '.join(missing)}; "
                    f"expected {', '.join(FINAL_KEYS)})"
                )
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as an .npz file ({exc})") from None
    try:
        out["metadata"] = json.loads(str(out["metadata"][()]))
    except json.JSONDecodeError:
        out["metadata"] = None
    if not isinstance(out["metadata"], dict):
        raise UserError(f"{path}: its metadata is not a JSON object (not written by scarce ensemble?)")
    return out


def _resolve_members(final_path: Path, meta: dict, members: Sequence[str] | None) -> tuple[list[str], int]:
    """Member files in voting order and the base's index in that list."""
    recorded = [str(m) for m in meta.get("members") or []]
    paths = [str(m) for m in members] if members else recorded
    if not paths:
        raise UserError(f"{final_path}: its metadata lists no members; pass --members a.npz b.npz ...")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        hint = "" if members else " (paths recorded in its metadata); pass --members"
        raise UserError(f"{final_path}: member file {missing[0]} not found{hint}")
    base = str(meta.get("base", paths[0]))
    real = [os.path.realpath(p) for p in paths]
    if os.path.realpath(base) in real:
        return paths, real.index(os.path.realpath(base))
    names = [Path(p).name for p in paths]
    return paths, names.index(Path(base).name) if Path(base).name in names else 0


def load_ensemble(final_path: str | Path, members: Sequence[str] | None = None) -> dict:
    """Final answers, base predictions and the ``[M, N, C]`` member stack, rows in ``final``'s order."""
    final_path = Path(final_path)
    final = read_final(final_path)
    paths, base_index = _resolve_members(final_path, final["metadata"], members)
    loaded = [load_predictions(p) for p in paths]
    ref = Predictions(
        np.zeros((len(final["ids"]), len(final["classes"])), np.float32),
        final["ids"],
        final["classes"],
        final["targets"].astype(np.int64),
        {},
        str(final_path),
    )
    aligned = align_predictions(ref, loaded, [str(final_path), *paths])
    stack = np.stack([m.probs for m in aligned])
    return {
        "final": final,
        "pred": final["pred"].astype(np.int64),
        "targets": ref.targets,
        "stack": stack,
        "base": stack[base_index],
        "base_index": base_index,
        "paths": paths,
        "classes": list(final["classes"]),
    }


def confidence_bins(
    confidence: np.ndarray, correct_base: np.ndarray, correct_final: np.ndarray, n_bins: int = 10
) -> dict:
    """Equal-width bins of base confidence: counts and accuracy of base and final answers per bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    safe = np.maximum(counts, 1)
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "base": (np.bincount(idx, weights=correct_base, minlength=n_bins) / safe).tolist(),
        "final": (np.bincount(idx, weights=correct_final, minlength=n_bins) / safe).tolist(),
    }


def analyse_ensemble(e: dict) -> dict:
    """The numbers of the report, from :func:`load_ensemble`'s dict.

    ``replaced``: answers differing from the base model's. With labels (on the labelled
    rows only): ``fixed`` / ``broken`` / ``other`` replaced answers (base wrong -> right,
    right -> wrong, wrong -> wrong), ``accuracy`` per rule, ``bins`` (:func:`confidence_bins`),
    ``curve`` (``choose_threshold`` rows over ``CURVE_THRESHOLDS``) and ``best_threshold``.
    """
    base, pred, y = e["base"], e["pred"], e["targets"]
    base_answer = base.argmax(axis=1)
    changed = pred != base_answer
    out: dict = {"n": len(pred), "replaced": int(changed.sum()), "labelled": int((y >= 0).sum())}
    m = y >= 0
    if not m.any():
        return out
    base_ok, final_ok = base_answer[m] == y[m], pred[m] == y[m]
    c = changed[m]
    out.update(
        fixed=int((c & ~base_ok & final_ok).sum()),
        broken=int((c & base_ok & ~final_ok).sum()),
        other=int((c & ~base_ok & ~final_ok).sum()),
    )
    votes = e["stack"][:, m].argmax(axis=2)  # [M, n]
    out["accuracy"] = {
        "base": float(base_ok.mean()),
        "final": float(final_ok.mean()),
        "members": [float(v.mean()) for v in votes == y[m]],
        "oracle": oracle_accuracy(e["stack"][:, m], y[m]),
    }
    out["bins"] = confidence_bins(base[m].max(axis=1), base_ok.astype(float), final_ok.astype(float))
    out["best_threshold"], out["curve"] = choose_threshold(base[m], e["stack"][:, m], y[m], candidates=CURVE_THRESHOLDS)
    return out


def _breakdown_section(e: dict, a: dict) -> Section:
    meta = e["final"]["metadata"]
    changed = f"{a['replaced']} ({a['replaced'] / max(a['n'], 1):.2%})"
    if meta.get("base") is None:  # soft / weighted: no base, no threshold; member 0 is a reference
        rows = {"method": meta.get("method"), "members": len(e["paths"]), "samples": a["n"]}
        rows |= {"reference below (no base in this vote)": e["paths"][e["base_index"]]}
        rows |= {"answers differing from the reference": changed}
    else:
        rows = {
            "method": meta.get("method"),
            "threshold": meta.get("threshold"),
            "threshold source": meta.get("threshold_source"),
            "members": len(e["paths"]),
            "base": e["paths"][e["base_index"]],
            "samples": a["n"],
            "answers replaced": changed,
        }
    if meta.get("weights"):  # a weighted vote: each member's weight, and where it came from
        label, shown = describe_weights(e["paths"], meta["weights"], meta.get("weights_source"))
        rows[label] = shown
    parts = [key_values(rows)]
    if "accuracy" not in a:
        parts.append(paragraph("no labels in the ensemble output: accuracies cannot be shown", "note"))
        return Section("breakdown", "Voting breakdown", parts)
    parts.append(
        table(
            ["replaced answers (labelled)", "count"],
            [
                ("base wrong -> ensemble right (fixed)", a["fixed"]),
                ("base right -> ensemble wrong (broken)", a["broken"]),
                ("base wrong -> ensemble wrong (other class)", a["other"]),
                ("net gain", a["fixed"] - a["broken"]),
            ],
        )
    )
    acc = a["accuracy"]
    first = "base model" if meta.get("base") is not None else "reference (member 0)"
    rows_acc = [(first, acc["base"]), (f"ensemble ({meta.get('method')})", acc["final"])]
    rows_acc += [(f"member {i}: {Path(p).name}", v) for i, (p, v) in enumerate(zip(e["paths"], acc["members"]))]
    rows_acc.append(("oracle (any member right)", acc["oracle"]))
    parts.append(table([f"accuracy on {a['labelled']} labelled samples", "top-1"], rows_acc))
    return Section("breakdown", "Voting breakdown", parts)


def _labelled_sections(a: dict, figs: Figures, threshold: float | None) -> tuple[Section, Section]:
    bins_part = Section("confidence-bins", "Accuracy by base-confidence bin")
    curve = Section("threshold-curve", "Threshold curve (plurality vote)")
    if "bins" not in a:
        note = paragraph("no labels: accuracy per bin and the threshold curve need labelled predictions", "note")
        return Section(bins_part.id, bins_part.title, [note]), Section(curve.id, curve.title, [note])
    b, rows = a["bins"], a["curve"]
    bins_part.parts += [
        figs.add(
            plots.confidence_bins_figure(b["edges"], b["counts"], b["base"], b["final"], threshold),
            "confidence_bins",
            "accuracy by confidence bin",
        ),
        table(
            ["base confidence", "samples", "base accuracy", "ensemble accuracy"],
            [
                (f"{lo:.1f}-{hi:.1f}", n, ba, fa)
                for lo, hi, n, ba, fa in zip(b["edges"][:-1], b["edges"][1:], b["counts"], b["base"], b["final"])
                if n
            ],
        ),
    ]
    curve.parts += [
        paragraph(
            f"best threshold on these labels: {a['best_threshold']:g} (accuracy "
            f"{max(r.accuracy for r in rows):.4f}); choosing it on the test labels would overfit: "
            "pick it on validation predictions (scarce ensemble --threshold auto)",
            "note",
        ),
        figs.add(
            plots.threshold_figure(
                [r.threshold for r in rows],
                [r.accuracy for r in rows],
                [r.replaced for r in rows],
                threshold,
                a["accuracy"]["base"],
            ),
            "threshold_curve",
            "threshold curve",
        ),
    ]
    return bins_part, curve


def build_ensemble_report(
    final_path: str | Path, members: Sequence[str] | None = None, out: str | Path | None = None
) -> Path:
    """Write the ensemble report (default ``<final>_report.html`` beside ``final_path``) and its PNGs."""
    final_path = Path(final_path)
    e = load_ensemble(final_path, members)
    a = analyse_ensemble(e)
    out = Path(out) if out else final_path.with_name(final_path.stem + "_report.html")
    figs = Figures(out.parent, out.stem + "_")
    meta = e["final"]["metadata"]
    bins_part, curve = _labelled_sections(a, figs, meta.get("threshold"))
    if meta.get("threshold_table"):
        curve.parts.append(
            table(
                ["threshold (validation)", "val accuracy", "replaced"],
                [(r["threshold"], r["accuracy"], r["replaced"]) for r in meta["threshold_table"]],
            )
        )
    files = [("ensemble output", str(final_path))]
    has_base = e["final"]["metadata"].get("base") is not None
    files += [("base" if has_base and i == e["base_index"] else "member", p) for i, p in enumerate(e["paths"])]
    sections = [_breakdown_section(e, a), bins_part, curve, Section("files", "Files", [table(["role", "file"], files)])]
    return write_page(out, f"scarce ensemble report: {final_path.name}", str(final_path.resolve()), sections)
