"""Maintainer step: (re)build dmlbench/assets/glyph_classes.json.

Run once; the output is committed. Changing it invalidates the shipped
backbone (its pretraining classes must stay disjoint from train/test).
"""

import json
import sys
from pathlib import Path

from dmlbench.data.glyphs.classes import build_class_lists

out = Path(__file__).resolve().parents[1] / "dmlbench" / "assets" / "glyph_classes.json"
lists = build_class_lists()
out.write_text(json.dumps(lists, indent=1) + "\n")
print(
    f"{lists['candidates']} candidates, {len(lists['dropped_homoglyphs'])} homoglyph groups, "
    f"pretrain {len(lists['pretrain'])}, train {len(lists['train'])}, test {len(lists['test'])}",
    file=sys.stderr,
)
