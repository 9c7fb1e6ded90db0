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
from pathlib import Path
from typing import Sequence

import numpy as np

from scarce.errors import UserError
from scarce.inference import align_predictions, choose_threshold, load_predictions
from scarce.inference.predictions import Predictions
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
                raise UserError(f"{path}: not a scarce ensemble output (missing {', '.join(missing)}; "
                                f"expected {', '.join(FINAL_KEYS)})")
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as an .npz file ({exc})") from None
    out["metadata"] = json.loads(str(out["metadata"][()]))
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
    ref = Predictions(np.zeros((len(final["ids"]), len(final["classes"])), np.float32), final["ids"],
                      final["classes"], final["targets"].astype(np.int64), {}, str(final_path))
    aligned = align_predictions(ref, loaded, [str(final_path), *paths])
    stack = np.stack([m.probs for m in aligned])
    return {"final": final, "pred": final["pred"].astype(np.int64), "targets": ref.targets, "stack": stack,
            "base": stack[base_index], "base_index": base_index, "paths": paths, "classes": list(final["classes"])}


def confidence_bins(confidence: np.ndarray, correct_base: np.ndarray, correct_final: np.ndarray,
                    n_bins: int = 10) -> dict:
    """Equal-width bins of base confidence: counts and accuracy of base and final answers per bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    safe = np.maximum(counts, 1)
    return {"edges": edges.tolist(), "counts": counts.tolist(),
            "base": (np.bincount(idx, weights=correct_base, minlength=n_bins) / safe).tolist(),
            "final": (np.bincount(idx, weights=correct_final, minlength=n_bins) / safe).tolist()}


def _breakdown_section(e: dict, base_answer: np.ndarray, labelled: np.ndarray) -> Section:
    pred, y, meta = e["pred"], e["targets"], e["final"]["metadata"]
    changed = pred != base_answer
    rows = {"method": meta.get("method"), "threshold": meta.get("threshold"),
            "threshold source": meta.get("threshold_source"), "members": len(e["paths"]),
            "base": e["paths"][e["base_index"]], "samples": len(pred),
            "answers replaced": f"{int(changed.sum())} ({changed.mean():.2%})"}
    parts = [key_values(rows)]
    if labelled.any():
        fixed = int((changed & labelled & (base_answer != y) & (pred == y)).sum())
        broken = int((changed & labelled & (base_answer == y) & (pred != y)).sum())
        both = int((changed & labelled & (base_answer != y) & (pred != y)).sum())
        parts.append(table(["replaced answers (labelled)", "count"],
                           [("base wrong -> ensemble right (fixed)", fixed),
                            ("base right -> ensemble wrong (broken)", broken),
                            ("base wrong -> ensemble wrong (other class)", both),
                            ("net gain", fixed - broken)]))
        acc = [("base model", float((base_answer[labelled] == y[labelled]).mean())),
               (f"ensemble ({meta.get('method')})", float((pred[labelled] == y[labelled]).mean()))]
        votes = e["stack"].argmax(axis=2)
        acc += [(f"member {i}: {Path(p).name}", float((votes[i][labelled] == y[labelled]).mean()))
                for i, p in enumerate(e["paths"])]
        acc.append(("oracle (any member right)", float((votes[:, labelled] == y[labelled]).any(axis=0).mean())))
        parts.append(table([f"accuracy on {int(labelled.sum())} labelled samples", "top-1"], acc))
    else:
        parts.append(paragraph("no labels in the ensemble output: accuracies cannot be shown", "note"))
    return Section("breakdown", "Voting breakdown", parts)


def build_ensemble_report(final_path: str | Path, members: Sequence[str] | None = None,
                          out: str | Path | None = None) -> Path:
    """Write the ensemble report (default ``<final>_report.html`` beside ``final_path``) and its PNGs."""
    final_path = Path(final_path)
    e = load_ensemble(final_path, members)
    out = Path(out) if out else final_path.with_name(final_path.stem + "_report.html")
    figs = Figures(out.parent, out.stem + "_")
    base, y, meta = e["base"], e["targets"], e["final"]["metadata"]
    base_answer = base.argmax(axis=1)
    confidence = base.max(axis=1)
    labelled = y >= 0
    sections = [_breakdown_section(e, base_answer, labelled)]
    threshold = meta.get("threshold")
    bins_part = Section("confidence-bins", "Accuracy by base-confidence bin")
    curve = Section("threshold-curve", "Threshold curve (plurality vote)")
    if labelled.any():
        m = labelled
        b = confidence_bins(confidence[m], (base_answer[m] == y[m]).astype(float), (e["pred"][m] == y[m]).astype(float))
        bins_part.parts += [figs.add(plots.confidence_bins_figure(b["edges"], b["counts"], b["base"], b["final"], threshold),
                                     "confidence_bins", "accuracy by confidence bin"),
                            table(["base confidence", "samples", "base accuracy", "ensemble accuracy"],
                                  [(f"{lo:.1f}-{hi:.1f}", n, ba, fa) for lo, hi, n, ba, fa in
                                   zip(b["edges"][:-1], b["edges"][1:], b["counts"], b["base"], b["final"]) if n])]
        best, rows = choose_threshold(base[m], e["stack"][:, m], y[m], candidates=CURVE_THRESHOLDS)
        base_acc = float((base_answer[m] == y[m]).mean())
        curve.parts += [paragraph(f"best threshold on these labels: {best:g} (accuracy "
                                  f"{max(r.accuracy for r in rows):.4f}); choosing it on the test labels "
                                  "would overfit, pick it on validation predictions (--threshold auto)", "note"),
                        figs.add(plots.threshold_figure([r.threshold for r in rows], [r.accuracy for r in rows],
                                                        [r.replaced for r in rows], threshold, base_acc),
                                 "threshold_curve", "threshold curve")]
    else:
        note = paragraph("no labels: accuracy per bin and the threshold curve need labelled predictions", "note")
        bins_part.parts.append(note)
        curve.parts.append(note)
    table_rows = meta.get("threshold_table")
    if table_rows:
        curve.parts.append(table(["threshold (validation)", "val accuracy", "replaced"],
                                 [(r["threshold"], r["accuracy"], r["replaced"]) for r in table_rows]))
    sections += [bins_part, curve, Section("files", "Files", [table(["role", "file"],
                 [("ensemble output", str(final_path))] + [("base" if i == e["base_index"] else "member", p)
                                                          for i, p in enumerate(e["paths"])])])]
    return write_page(out, f"scarce ensemble report: {final_path.name}", str(final_path.resolve()), sections)
