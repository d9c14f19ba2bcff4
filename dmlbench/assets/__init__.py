"""Data files dmlbench ships (class lists, the glyph backbone, the paper's numbers),
and the names other modules use to refer to them."""

GLYPH_BACKBONE = "vit_glyph_patch8_48"  # timm name of the shipped glyph ViT
GLYPH_WEIGHTS_FILE = f"{GLYPH_BACKBONE}.safetensors"
