"""Maintainer step: (re)build a glyph benchmark's shipped class lists.

    python tools/make_glyph_classes.py          # glyphs: dmlbench/assets/glyph_classes_v2.json
    python tools/make_glyph_classes.py --v1     # glyphs-v1: dmlbench/assets/glyph_classes.json

Run once; the output is committed. Changing it invalidates the shipped
backbone (its pretraining classes must stay disjoint from train/val/test).
"""

import json
import sys
from pathlib import Path

assets = Path(__file__).resolve().parents[1] / "dmlbench" / "assets"
if "--v1" in sys.argv:
    from dmlbench.data.glyphs.classes import build_class_lists

    lists = build_class_lists()
    (assets / "glyph_classes.json").write_text(json.dumps(lists, indent=1) + "\n")
else:
    from dmlbench.data.glyphs.classes_v2 import build_class_lists_v2

    lists = build_class_lists_v2()
    (assets / "glyph_classes_v2.json").write_text(json.dumps(lists, separators=(",", ":")))
print(
    f"{lists['candidates']} candidates, {len(lists['dropped_homoglyphs'])} homoglyph groups, "
    + ", ".join(f"{k} {len(lists[k])}" for k in ("pretrain", "train", "val", "test") if k in lists),
    file=sys.stderr,
)
