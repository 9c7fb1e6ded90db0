"""The paper's Table 1 ensemble as one resumable command (see scarce.workflows.paper).

    python scripts/paper_ensemble.py --data /data/imagenet-50 --out runs/paper       # GPU-sized
    python scripts/paper_ensemble.py --scale small --out runs/paper-small            # CPU dry run, demo data

Same as ``python -m scarce.workflows.paper``; rerun the same command to resume.
"""

import sys

from scarce.workflows.paper import main

if __name__ == "__main__":
    sys.exit(main())
