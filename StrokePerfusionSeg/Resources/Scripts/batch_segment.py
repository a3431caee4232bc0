"""Headless batch segmentation in 3D Slicer: the ``strokeperfusionseg segment`` command.

    Slicer --no-main-window --python-script batch_segment.py -- --batch STUDIES --out OUT [options]

Takes the options of ``strokeperfusionseg segment`` (``--batch DIR|CSV``, ``--out``,
``--method dl|threshold``, ``--model``, ``--format``, ``--shard``, ...) and runs the same batch
runner and pipeline, so the files, the ``summary.csv`` and the exit status are the same as on
the command line. It also runs with plain Python where the library is installed.
"""

import sys
from pathlib import Path

# Inside Slicer the library sits beside the module file, two folders up from this script.
MODULE_DIR = Path(__file__).resolve().parents[2]
if (MODULE_DIR / "StrokePerfusionSegLib").is_dir() and str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from StrokePerfusionSegLib.cli import main  # noqa: E402

arguments = sys.argv[1:]
if arguments[:1] == ["--"]:  # Slicer passes the separator through
    arguments = arguments[1:]
status = main(["segment", *arguments])
try:
    import slicer
except ImportError:  # plain Python
    slicer = None
if slicer is not None and hasattr(slicer, "app"):  # inside Slicer: quit the application with the status
    slicer.util.exit(status)
else:  # plain Python, or slicer-core, which has no application
    sys.exit(status)
