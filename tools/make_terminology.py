"""Write StrokePerfusionSeg/Resources/StrokePerfusionSeg.term.json from labels.py.

The segment codes live in ``StrokePerfusionSegLib/labels.py``; this file is generated from them
so that the two never disagree (``Testing/test_terminology.py`` checks it). Run after changing
the codes::

    python tools/make_terminology.py
"""

from __future__ import annotations

from StrokePerfusionSegLib.terminology import TERMINOLOGY_FILE, terminology_json_text

if __name__ == "__main__":
    TERMINOLOGY_FILE.write_text(terminology_json_text())
    print(f"wrote {TERMINOLOGY_FILE}")
