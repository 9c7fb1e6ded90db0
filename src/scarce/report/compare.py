"""``scarce compare RUN...``: finished runs side by side, grouped by config.

Runs whose configs differ only in ``seed`` / ``data.split_seed`` (and in keys that do not change
what is trained: threads, device, loader workers, checkpoint timing) form one row, with the mean
and standard deviation over them; each row is named by the config keys that set it apart from
the others; a run resumed with other settings is marked ``*`` (``resumes.jsonl``). Runs on another
number of processes (``torchrun``; ``processes`` from ``environment.json``) are another row: the
batch size is per process. ``data.skip_bad_images`` marks a row only where it left images out. What
is read: ``config.yaml``, ``summary.json``, ``resumes.jsonl``, ``environment.json`` and
``bad_images.json`` of each run, and whether its data folder has a ``val/`` (where not, the split
seed draws val from train); nothing is loaded or scored.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from scarce.config import config_to_dict, flat_keys, saved_config
from scarce.data.splits import split_seed_samples
from scarce.engine.resume import RESUMES_FILE
from scarce.errors import UserError
from scarce.io import read_json, read_jsonl

SEED_KEYS = ("seed", "data.split_seed")
# how a run was computed, not what: never a reason for another row (checkpoint.select is: it
# decides which weights are scored)
RUN_ONLY_KEYS = (
    "device",
    "threads",
    "data.num_workers",
    "data.cache",
    "checkpoint.every_seconds",
    "checkpoint.every_epochs",
    "checkpoint.keep_at_end",
    "log.",
)
COLUMNS = ("config", "n", "seeds", "test top-1 %", "balanced acc. %", "val top-1 %", "ECE test %", "epochs", "s / run")


def find_runs(paths: list[str]) -> list[Path]:
    """Run directories (with ``config.yaml``) among ``paths``; a folder that is not a run stands
    for the runs below it (``scarce compare runs/``)."""
    runs: list[Path] = []
    for given in paths:
        path = Path(given)
        if (path / "config.yaml").is_file():
            runs.append(path)
        elif path.is_dir():
            below = sorted(p.parent for p in path.rglob("config.yaml"))
            if not below:
                raise UserError(f"{path}: no scarce run in it (no config.yaml below it)")
            runs += below
        else:
            raise UserError(f"{path}: not a run directory nor a folder of runs")
    return list(dict.fromkeys(runs))


def read_run(run: Path) -> dict | None:
    """``{"run", "config", "summary", "changed_on_resume", "split_sampled"}`` of a finished run; None
    when it has no summary.json yet."""
    if not (run / "summary.json").is_file():
        return None
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{run}: cannot read its summary.json ({exc})") from None
    # built as a Config, so a key an older run's file lacks reads as its default (not as a difference)
    cfg = saved_config(run / "config.yaml")
    # batch_size is per process: a run on 2 processes trained with twice the global batch
    config = {**flat_keys(config_to_dict(cfg)), "processes": _processes(run)}
    config["data.skip_bad_images"] = _skipped_any(run, cfg.data.skip_bad_images)
    # config.yaml holds a resumed run's new values: the keys changed mid-run mark its seed
    # (a requeue with other threads or workers trains the same: not a mark)
    entries = [e for e in read_jsonl(run / RESUMES_FILE) if isinstance(e, dict) and isinstance(e.get("changed"), dict)]
    changed = sorted({key for e in entries for key in e["changed"] if not key.startswith(RUN_ONLY_KEYS)})
    samples = split_seed_samples(cfg.data)  # else its split seed is no difference worth showing
    return {"run": run, "config": config, "summary": summary, "changed_on_resume": changed, "split_sampled": samples}


def _processes(run: Path) -> int:
    """The run's number of training processes (environment.json; runs from before it: 1)."""
    path = run / "environment.json"
    env = read_json(path) if path.is_file() else {}
    size = env.get("world_size", 1) if isinstance(env, dict) else 1
    return size if isinstance(size, int) and size >= 1 else 1


def _skipped_any(run: Path, skip_bad_images: bool) -> bool:
    """Whether the run left images out: skipping switched on over clean data trained on the same
    images as without it (bad_images.json empty), so it is no reason for another row."""
    path = run / "bad_images.json"
    if not skip_bad_images or not path.is_file():  # a run from before the file: as configured
        return skip_bad_images
    return read_json(path) != []


def _setting(config: dict) -> tuple:
    """What a run trains, without its seeds and run-only keys: runs with equal settings are one row."""
    kept = {k: v for k, v in config.items() if k not in SEED_KEYS and not k.startswith(RUN_ONLY_KEYS)}
    return tuple(sorted((k, json.dumps(v)) for k, v in kept.items()))


def _label(setting: tuple, differing: list[str]) -> str:
    values = {k: json.loads(v) for k, v in setting}
    shown = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}  # null, true, 0.8
    return ", ".join(f"{k}={shown[k]}" for k in differing if k in shown) or "(all alike)"


def _pm(values: list[float | None], scale: float = 100.0, digits: int = 2) -> str:
    present = [scale * v for v in values if v is not None]
    if not present:
        return "-"
    spread = f" +- {statistics.stdev(present):.{digits}f}" if len(present) > 1 else ""
    return f"{statistics.fmean(present):.{digits}f}{spread}"


def _seed(run: dict, show_split: bool) -> str:
    """``seed``, ``seed/split_seed`` when some run samples other images, ``*`` when resumed with changes."""
    text = str(run["config"].get("seed"))
    if show_split and run["split_sampled"]:
        text += f"/{run['config'].get('data.split_seed', 0)}"
    return text + ("*" if run["changed_on_resume"] else "")


def compare_rows(runs: list[dict]) -> list[dict]:
    """One row per setting (in the order runs were given): label, n, seeds and the scores."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(_setting(r["config"]), []).append(r)
    keys = sorted({k for setting in groups for k, _ in setting})
    differing = [k for k in keys if len({dict(s).get(k) for s in groups}) > 1]
    show_split = any(r["config"].get("data.split_seed", 0) != 0 and r["split_sampled"] for r in runs)
    rows = []
    for setting, members in groups.items():
        summaries = [m["summary"] for m in members]
        test = [s.get("test", {}) for s in summaries]
        rows.append(
            {
                "config": _label(setting, differing),
                "n": len(members),
                "seeds": " ".join(_seed(m, show_split) for m in members),
                "test top-1 %": _pm([t.get("top1") for t in test]),
                "balanced acc. %": _pm([t.get("balanced_accuracy") for t in test]),
                # a run without val records best top-1 -1
                "val top-1 %": _pm(
                    [s.get("best", {}).get("top1") for s in summaries if s.get("best", {}).get("top1", -1) >= 0]
                ),
                "ECE test %": _pm([s.get("calibration", {}).get("ece_test_after") for s in summaries]),
                "epochs": _pm([s.get("epochs") for s in summaries], scale=1, digits=0),
                "s / run": _pm([s.get("train_seconds") for s in summaries], scale=1, digits=0),
                "runs": [str(m["run"]) for m in members],
                "changed_on_resume": {str(m["run"]): m["changed_on_resume"] for m in members if m["changed_on_resume"]},
            }
        )
    return rows


def render(rows: list[dict], fmt: str) -> str:
    """``rows`` as a markdown table (``md``), CSV or JSON."""
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "csv":  # the table's columns, then what each run marked * was resumed with
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*COLUMNS, "changed on resume"])
        for row in rows:
            changed = "; ".join(f"{run}: {' '.join(keys)}" for run, keys in row["changed_on_resume"].items())
            writer.writerow([*(row[c] for c in COLUMNS), changed])
        return buffer.getvalue()
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    if any("/" in row["seeds"] for row in rows):
        lines.append("\nseeds: seed/data.split_seed (another split seed samples other images)")
    for row in rows:
        for run, keys in row["changed_on_resume"].items():
            lines.append(
                f"* {run}: resumed with another {', '.join(keys)} (resumes.jsonl); grouped by its config.yaml, which holds the new values"
            )
    return "\n".join(lines) + "\n"


def compare_runs(paths: list[str]) -> tuple[list[dict], list[Path]]:
    """Rows of the finished runs among ``paths`` and the unfinished runs left out."""
    found = find_runs(paths)
    read = [(run, read_run(run)) for run in found]
    finished = [r for _, r in read if r is not None]
    if not finished:
        raise UserError(f"none of the {len(found)} runs has finished (no summary.json)")
    return compare_rows(finished), [run for run, r in read if r is None]
