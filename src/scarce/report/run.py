"""``scarce report RUN_DIR``: one HTML page about a finished training run.

The confusion matrix, per-class accuracy and reliability diagrams need the best
weights' scores on the test split; they are computed once (``load_run`` ->
``eval_dataset`` -> ``collect_scores``) and cached in ``RUN_DIR/report_test_scores.npz``,
keyed by the weights file and the temperature, so re-rendering is instant.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from scarce.config_yaml import dump_yaml, load_yaml
from scarce.errors import UserError
from scarce.io import atomic_path, read_json, read_jsonl
from scarce.report import plots
from scarce.report.fonts import figure_labels
from scarce.report.html import Figures, Section, details, key_values, paragraph, pre, table, write_page

CACHE_FILE = "report_test_scores.npz"


def _cache_key(weights: Path, temperature: float, source: str, split: str, dataset) -> dict:
    """What the cached scores depend on: the weights file, temperature, source, and the split's
    images (their ids, and for files their sizes and modification times)."""
    stat = weights.stat()
    digest = hashlib.blake2b(digest_size=16)
    for rel in dataset.ids:
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        if dataset.split.root is not None:
            file_stat = (Path(dataset.split.root) / rel).stat()
            digest.update(f"{file_stat.st_size}:{file_stat.st_mtime_ns}\0".encode())
    return {
        "weights": weights.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "temperature": temperature,
        "source": source,
        "split": split,
        "images": digest.hexdigest(),
    }


def _read_cache(path: Path, key: dict) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"][()])) != key:
                return None
            return {"scores": torch.from_numpy(z["scores"]), "targets": torch.from_numpy(z["targets"])}
    except (OSError, KeyError, ValueError):
        return None  # absent, torn or from another version: recompute


def split_scores(
    run_dir: str | Path, split: str = "test", device: str = "auto", batch_size: int = 64, num_workers: int = 0
) -> dict:
    """Best weights' pre-softmax scores on ``split``: ``scores`` float32 ``[N, C]``, ``targets`` int64 ``[N]``.

    Also returns ``temperature`` (calibration.json, else 1) and ``source``; cached in the run dir.
    """
    from scarce.data import build_eval_loader
    from scarce.engine.calibrate import collect_scores
    from scarce.engine.evaluation import eval_dataset, load_run
    from scarce.engine.factories import prediction_source

    run = load_run(run_dir, device)
    source = prediction_source(run.cfg)
    dataset = eval_dataset(run, run.cfg.data, split)
    key = _cache_key(run.weights, run.temperature, source, split, dataset)
    cache = run.run_dir / CACHE_FILE
    found = _read_cache(cache, key)
    if found is None:
        loader = build_eval_loader(dataset, batch_size, num_workers)
        preprocess = run.preprocessor()
        scores, targets = collect_scores(run.model, loader, preprocess, source, run.amp)
        found = {"scores": scores.float(), "targets": targets.long()}
        try:  # a cache is best-effort: a read-only run directory still gets its report elsewhere
            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:  # a file object: numpy adds no suffix
                np.savez(
                    fh, scores=found["scores"].numpy(), targets=found["targets"].numpy(), key=np.array(json.dumps(key))
                )
        except OSError:
            pass
    return {**found, "temperature": run.temperature, "source": source, "classes": run.classes}


def confusion_matrix(pred: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts; row = true class, column = predicted class."""
    return np.bincount(targets * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def _summary_section(run_dir: Path, cfg: dict, summary: dict, test: dict) -> Section:
    best = summary.get("best", {})
    from scarce.engine.saving import kept_weights

    kept = kept_weights(summary)  # checkpoint.select
    rows = {
        "run directory": str(run_dir),
        "model": cfg.get("model", {}).get("name"),
        "loss": cfg.get("loss", {}).get("name"),
        "epochs": summary.get("epochs", cfg.get("epochs")),
        "weights kept": summary.get("select"),
        f"{kept} epoch": best.get("epoch") if best else None,
        f"{kept} weights": best.get("weights"),
        f"{kept} val top-1": best.get("top1"),
        "test top-1": test.get("top1"),
        "test top-5": test.get("top5"),
        "test images": test.get("count"),
        "training seconds": summary.get("train_seconds"),
    }
    return Section("summary", "Summary", [key_values({k: v for k, v in rows.items() if v is not None})])


def _prediction_sections(
    run_dir: Path, figs: Figures, has_calibration: bool, split: str = "test", **eval_kwargs
) -> list[Section]:
    """Confusion matrix, per-class accuracy and reliability diagrams from the scores on ``split``
    (a split name or an image folder, as ``evaluate --split`` takes it)."""
    named = split in ("train", "val", "test")
    label, what = (f"{split} split", split) if named else (f"folder {split}",) * 2
    confusion = Section("confusion", f"Confusion matrix ({label}, the weights kept in best.safetensors)")
    per_class = Section("per-class", f"Per-class accuracy ({label})")
    reliability = Section("reliability", f"Reliability ({label})")
    try:
        got = split_scores(run_dir, split, **eval_kwargs)
    except UserError as exc:
        # the curves and summary still make a report; the terminal is told what it lacks
        print(f"report: {what} predictions unavailable ({exc}); those sections say so", flush=True)
        note = paragraph(f"{what} predictions unavailable: {exc}", "note")
        return [Section(s.id, s.title, [note]) for s in (confusion, per_class, reliability)]
    from scarce.calibration import reliability_bins

    scores, targets, classes, temp = got["scores"], got["targets"], got["classes"], got["temperature"]
    pred = scores.argmax(1).numpy()
    cm = confusion_matrix(pred, targets.numpy(), len(classes))
    counts = cm.sum(axis=1)
    acc = [float(cm[i, i] / counts[i]) if counts[i] else float("nan") for i in range(len(classes))]
    confusion.parts += [
        paragraph(
            f"top-1 recomputed from these predictions: {np.trace(cm) / cm.sum():.4f} "
            f"({int(np.trace(cm))} of {int(cm.sum())})"
        ),
        figs.add(plots.confusion_matrix_figure(cm, classes), "confusion", "confusion matrix"),
    ]
    many = len(classes) > plots.MAX_LABELLED_CLASSES
    if many:  # the matrix names no class and shows no counts: its largest cells as a table
        confusion.parts.append(_top_confusions(cm, classes))
    # where a figure shows class indices (many classes, or a name no installed font can draw)
    indexed = many or figure_labels(classes)[0] != list(classes)
    per_class.parts += [
        figs.add(plots.per_class_figure(acc, classes, counts), "per_class", "per-class accuracy"),
        details(
            "per-class table",
            table(
                ["#"] * indexed + ["class", "images", "accuracy", "most confused with"],
                [
                    (i,) * indexed + (c, int(counts[i]), acc[i], _confused_with(cm, i, classes))
                    for i, c in enumerate(classes)
                ],
            ),
            open_=not many,
        ),
    ]
    before = reliability_bins(scores.softmax(1), targets)
    after = reliability_bins((scores / temp).softmax(1), targets) if has_calibration else None
    reliability.parts.append(paragraph(f"confidence = top probability of the '{got['source']}' scores, 15 bins"))
    if not has_calibration:
        reliability.parts.append(paragraph("no calibration.json (no val split): only T=1 is shown", "note"))
    reliability.parts.append(figs.add(plots.reliability_figure(before, after, temp), "reliability", "reliability"))
    return [confusion, per_class, reliability]


def _top_confusions(cm: np.ndarray, classes: list[str], most: int = 15) -> str:
    """The ``most`` largest off-diagonal cells of ``cm`` as a table."""
    off = cm * (1 - np.eye(len(classes), dtype=cm.dtype))
    cells = [divmod(int(k), len(classes)) for k in np.argsort(-off, axis=None, kind="stable")[:most]]
    rows = [
        (f"{classes[i]} (#{i})", f"{classes[j]} (#{j})", int(cm[i, j]), cm[i, j] / max(cm[i].sum(), 1))
        for i, j in cells
        if off[i, j]
    ]
    return table(["true class", "predicted as", "images", "share of the true class"], rows) if rows else ""


def _confused_with(cm: np.ndarray, i: int, classes: list[str]) -> str:
    row = cm[i].copy()
    row[i] = 0
    j = int(row.argmax())
    return f"{classes[j]} ({int(row[j])})" if row[j] else "-"


def _calibration_table(calibration: dict) -> str:
    rows = [
        (split, calibration.get(f"ece_{split}_before"), calibration.get(f"ece_{split}_after"))
        for split in ("val", "test")
        if f"ece_{split}_before" in calibration
    ]
    rows.append(("NLL val", calibration.get("nll_val_before"), calibration.get("nll_val_after")))
    return paragraph(
        f"calibration.json: source '{calibration.get('source')}', temperature "
        f"{calibration.get('temperature', 1.0):.4g} fitted on {calibration.get('n_val')} val images"
    ) + table(["ECE (15 bins)", "before (T=1)", "after"], rows)


def build_run_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    split: str = "test",
) -> Path:
    """Write ``out`` (default ``RUN_DIR/report.html``) and its PNGs beside it; return the HTML path.
    The prediction sections score ``split`` (default test; an image folder for a run without one)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: no config.yaml (expected a scarce run directory)")
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    if not rows:  # stopped before its first epoch ended: no weights, no curves
        raise UserError(
            f"{run_dir}: no finished epoch yet, so nothing to report; continue it with: {_resume_command(run_dir)}"
        )
    out = Path(out) if out else run_dir / "report.html"
    figs = Figures(out.parent, out.stem + "_")
    cfg = load_yaml((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    test = read_json(run_dir / "test_metrics.json") if (run_dir / "test_metrics.json").is_file() else {}
    calibration = read_json(run_dir / "calibration.json") if (run_dir / "calibration.json").is_file() else None
    curves = _curves_section(figs, rows, summary.get("best", {}).get("epoch"))
    sections = [_summary_section(run_dir, cfg, summary, test), curves]
    if not summary:  # killed, stopped, or still training: say so before anything else
        sections[0].parts.insert(
            0,
            paragraph(
                f"This run is unfinished: no summary.json; {len(rows)} of {cfg.get('epochs', '?')} epochs recorded. "
                f"Continue it with: {_resume_command(run_dir)}",
                "note",
            ),
        )
    predictions = _prediction_sections(
        run_dir, figs, calibration is not None, split, device=device, batch_size=batch_size, num_workers=num_workers
    )
    if calibration is not None:
        predictions[-1].parts.insert(0, _calibration_table(calibration))
    sections += predictions
    sections.append(Section("config", "Resolved config (config.yaml)", [pre(dump_yaml(cfg))]))
    sections.append(_timings_section(figs, rows, summary))
    env_path = run_dir / "environment.json"
    env = read_json(env_path) if env_path.is_file() else {}
    sections.append(
        Section("environment", "Environment", [key_values(env) if env else paragraph("no environment.json", "note")])
    )
    return write_page(out, f"scarce run report: {run_dir.name}", str(run_dir.resolve()), sections)


def _resume_command(run_dir: Path) -> str:
    """The command that continues ``run_dir``: under torchrun as it trained (environment.json)."""
    from scarce.engine.faults import resume_command

    env = read_json(run_dir / "environment.json") if (run_dir / "environment.json").is_file() else {}
    world_size = env.get("world_size") if isinstance(env.get("world_size"), int) else 1
    per_node = env.get("local_world_size") if isinstance(env.get("local_world_size"), int) else None
    return resume_command(run_dir, world_size, per_node)


def _curves_section(figs: Figures, rows: list[dict], best_epoch: int | None) -> Section:
    """The loss, val top-1 and lr curves, with the per-epoch values behind a fold."""
    columns = ["epoch", "train loss", "val top-1", "val top-1 EMA", "lr", "seconds"]
    values = [
        (
            r["epoch"],
            r.get("train_loss"),
            r.get("val_top1", ""),
            r.get("val_top1_ema", ""),
            f"{r['lr']:.3g}" if "lr" in r else "",
            r.get("seconds", ""),
        )
        for r in rows
    ]
    figure = figs.add(plots.training_curves(rows, best_epoch), "curves", "training curves")
    return Section("curves", "Training curves", [figure, details("per-epoch values", table(columns, values))])


def _timings_section(figs: Figures, rows: list[dict], summary: dict) -> Section:
    seconds = [r["seconds"] for r in rows if "seconds" in r]
    timing = {
        "training seconds (total, with evaluation)": summary.get("train_seconds"),
        "epochs recorded": len(rows),
        "mean seconds per epoch": float(np.mean(seconds)) if seconds else None,
        "mean images/s": float(np.mean([r["images_per_s"] for r in rows if "images_per_s" in r] or [np.nan])),
    }
    kept = key_values({k: v for k, v in timing.items() if v is not None})
    return Section("timings", "Timings", [kept, figs.add(plots.timing_figure(rows), "timings", "timings")])
