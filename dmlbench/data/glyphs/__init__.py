"""The offline glyph benchmark: fonts, class lists, rendering, and the dataset."""


def __getattr__(name: str):
    """``dmlbench.data.glyphs.X`` for the renderer's names: the module before 0.2."""
    import importlib
    import importlib.util
    import warnings

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(name)  # a submodule: let the import system load it
    render = importlib.import_module(f"{__name__}.render")
    if not hasattr(render, name):
        raise AttributeError(f"module 'dmlbench.data.glyphs' has no attribute {name!r}")
    warnings.warn(
        f"dmlbench.data.glyphs.{name} moved to dmlbench.data.glyphs.render.{name}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(render, name)
