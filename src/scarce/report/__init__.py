"""Reports a person looks at: the run report, the ensemble report, the augmentation preview.

Figures are drawn with matplotlib (Agg canvas, no pyplot); pages are single HTML files
with the PNGs embedded (base64), written beside those PNGs.
"""

from scarce.report.ensemble import build_ensemble_report
from scarce.report.preview import augment_preview
from scarce.report.run import build_run_report

__all__ = ["augment_preview", "build_ensemble_report", "build_run_report"]
