"""Data files dmlbench ships (class lists, the glyph backbone, the paper's numbers),
and the names other modules use to refer to them."""

GLYPH_BACKBONE = "vit_glyph_patch8_48"  # timm name of the shipped glyph ViT
GLYPH_WEIGHTS_FILE = f"{GLYPH_BACKBONE}.safetensors"  # pretrained for glyphs-v1
GLYPH_V2_WEIGHTS_FILE = f"{GLYPH_BACKBONE}_v2.safetensors"  # pretrained for glyphs
# timm names (with pretrained tags) of the two shipped backbones
GLYPH_V1_BACKBONE = f"{GLYPH_BACKBONE}.dmlbench_glyphs"
GLYPH_V2_BACKBONE = f"{GLYPH_BACKBONE}.dmlbench_glyphs_v2"
