"""Headless batch segmentation: run with Slicer or with plain Python (slicer-core installed).

    Slicer --no-main-window --python-script batch_segment.py -- --input DIR --output DIR [--method ...]
    python batch_segment.py --input DIR --output DIR [--method ...]

All the work is in ``StrokePerfusionSegLib.batch`` (see its doc for the accepted layouts).
"""

import sys
from pathlib import Path

# Inside Slicer the library sits beside the module file, two folders up from this script.
MODULE_DIR = Path(__file__).resolve().parents[2]
if (MODULE_DIR / "StrokePerfusionSegLib").is_dir() and str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from StrokePerfusionSegLib.batch import main  # noqa: E402

status = main(sys.argv[1:])
import slicer  # noqa: E402

if hasattr(slicer, "app"):  # inside Slicer: quit the application with the batch's status
    slicer.util.exit(status)
else:  # slicer-core has no application
    sys.exit(status)
