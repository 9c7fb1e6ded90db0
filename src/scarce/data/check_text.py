"""``scarce data check``'s report (:func:`scarce.data.check.check_dataset`) as fixed-width text."""

from __future__ import annotations

from scarce.data.datasets import IMAGE_EXTENSIONS


def _size_text(sizes: dict) -> str:
    if sizes["min"] is None:
        return "-"
    (w_lo, h_lo), (w_hi, h_hi) = sizes["min"], sizes["max"]
    if (w_lo, h_lo) == (w_hi, h_hi):
        return f"{w_lo}x{h_lo}"
    return f"{w_lo}..{w_hi} x {h_lo}..{h_hi}"


def _listing(title: str, rows: list[str], limit: int) -> list[str]:
    """A blank line, ``title``, then at most ``limit`` indented rows and how many more there are."""
    more = [f"  ... {len(rows) - limit} more"] if len(rows) > limit else []
    return ["", title] + [f"  {row}" for row in rows[:limit]] + more


def _split_tables(splits: dict) -> list[str]:
    """Images, unreadable files, sizes and modes per split; then images per class and split."""
    lines = [f"{'split':<6} {'images':>7} {'bad':>5}  {'sizes (w x h)':<22} modes"]
    for name, s in splits.items():
        modes = ", ".join(f"{m}:{n}" for m, n in sorted(s["modes"].items()))
        lines.append(f"{name:<6} {s['images']:>7} {len(s['bad']):>5}  {_size_text(s['sizes']):<22} {modes}")
    classes = list(next(iter(splits.values()))["classes"])
    width = max(len(c) for c in classes + ["class"])
    lines += ["", f"{'class':<{width}} " + " ".join(f"{n:>6}" for n in splits)]
    lines += [f"{c:<{width}} " + " ".join(f"{s['classes'].get(c, 0):>6}" for s in splits.values()) for c in classes]
    return lines


def format_report(report: dict, limit: int = 20) -> str:
    """The report as fixed-width tables (at most ``limit`` rows of each listing)."""
    splits = report["splits"]
    lines = _split_tables(splits)
    bad = [f"{b['path']}: {b['reason']}" for s in splits.values() for b in s["bad"]]
    if bad:
        lines += _listing(f"unreadable images: {len(bad)}", bad, limit)
    skipped = [path for s in splits.values() for path in s.get("skipped_files", [])]
    if skipped:
        title = f"files not read as images (extension not {'/'.join(IMAGE_EXTENSIONS)}, or hidden): {len(skipped)}"
        lines += _listing(title, skipped, limit)
    nested = [
        f"{name}/{cls}: {', '.join(subs)}"
        for name, s in splits.items()
        for cls, subs in s.get("nested_folders", {}).items()
    ]
    if nested:  # a note, not a problem: grouped photos are a class's own sub-folders
        lines += _listing(
            f"class folders with sub-folders (their images are read as the class): {len(nested)}", nested, limit
        )
    dups = report["duplicates"]
    rows = []
    for d in dups:
        a, b = d["splits"]
        rows.append(f"{d['kind']:<5} bits={d['hamming']:<2} mae={d['mae']:<5g} {a}: {d[a]}  {b}: {d[b]}")
    title = (
        f"duplicates across splits (dHash <= {report['max_hamming']} of 64 bits and thumbnail "
        f"difference <= {report['max_mae']:g} grey levels): {len(dups)}"
    )
    lines += _listing(title, rows, limit)
    conflicts = [f"{c['split']}: {', '.join(c['labels'])}: {'  '.join(c['paths'])}" for c in report["label_conflicts"]]
    if conflicts:
        lines += _listing(f"identical images under different labels: {len(conflicts)}", conflicts, limit)
    repeats = [f"{r['split']}: {r['labels'][0]}: {'  '.join(r['paths'])}" for r in report.get("repeats", [])]
    if repeats:
        lines += _listing(f"identical images repeated under one label (counted twice): {len(repeats)}", repeats, limit)
    lines += [f"manifest: {m}" for m in report["manifest"]]
    lines += report["too_few_classes"]
    lines.append(f"problems: {report['problems']}")
    return "\n".join(lines)
