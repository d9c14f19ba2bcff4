"""DoRA (Liu et al., ICML 2024), via peft: LoRA on a weight split into magnitude and
direction, W' = m · (W + (α/r)·B·A) / ‖W + (α/r)·B·A‖ per output row.

peft's ``use_dora`` adds the magnitude vector m (one per output, starting at the
pretrained row norms) beside LoRA's A and B; it merges like LoRA, so inference
costs what the backbone costs.
"""

from __future__ import annotations

from dmlbench.methods.lora import LoRA

from dmlbench.method import TableRow
from dmlbench.registry import register_method


@register_method("dora")
class DoRA(LoRA):
    description = "DoRA (peft): LoRA with a learned magnitude per output, merged."
    use_dora = True
    table_rows = (TableRow("DoRA (r8, qkv)", {"rank": 8, "targets": "qkv"}, order=40),)
