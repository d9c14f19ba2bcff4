"""The font families of the glyph benchmark (``glyphs``): Google Fonts as PyPI packages.

matplotlib ships 20 families, too few for a pretraining set whose styles cover
the downstream ones (the ImageNet-21k → CUB regime). Google Fonts are on PyPI
as small data packages (``fontpkg-<slug>``, OFL-licensed TTFs with a
``metadata.json``), read through the ``fontpkg`` library. 56 families, chosen
by category (sans 24, serif 14, display 8, handwriting 5, mono 5) among those
covering Latin Extended, preferring variable fonts (weight as a style axis)
and small files, without caps-only faces (they would merge every letter with
its capital): 41 MB installed (39 MB of TTF files). 48 families render the
pretraining set; 8 (spread over the categories) are held out and appear only
in the train / val / test images, as styles the backbone never saw. Versions are pinned
(``pyproject.toml``) and each file's hash goes into the data fingerprint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from dmlbench.errors import UserError

# slug → (pinned version, category, used for pretraining)
FAMILIES: dict[str, tuple[str, str, bool]] = {
    "arimo": ("1.341", "sans", True),
    "encode-sans": ("3.2", "sans", True),
    "epilogue": ("2.112", "sans", True),
    "exo": ("2.1", "sans", True),
    "inter": ("4.1.post1", "sans", True),
    "inter-tight": ("3.4", "sans", True),
    "lexend": ("1.7", "sans", True),
    "lexend-deca": ("1.7", "sans", True),
    "libre-franklin": ("3.0", "sans", True),
    "maven-pro": ("2.103", "sans", True),
    "merriweather-sans": ("2.1", "sans", True),
    "montserrat": ("9.0", "sans", True),
    "mulish": ("3.603", "sans", True),
    "news-cycle": ("0.510", "sans", True),
    "nunito": ("3.602", "sans", True),
    "nunito-sans": ("3.101", "sans", True),
    "overpass": ("4.0", "sans", True),
    "questrial": ("2.0", "sans", True),
    "quicksand": ("3.6", "sans", False),
    "raleway": ("4.26", "sans", True),
    "source-sans-3": ("3.52", "sans", True),
    "space-grotesk": ("2.0", "sans", False),
    "unbounded": ("1.701", "sans", False),
    "varela-round": ("3.10", "sans", True),
    "andada-pro": ("3.3", "serif", True),
    "bitter": ("3.21", "serif", True),
    "cardo": ("1.45", "serif", True),
    "cormorant": ("4.0", "serif", False),
    "cormorant-garamond": ("4.1", "serif", True),
    "crimson-pro": ("1.3", "serif", True),
    "crimson-text": ("1.100", "serif", True),
    "eb-garamond": ("1.3", "serif", True),
    "fraunces": ("1.0", "serif", False),
    "libre-baskerville": ("2.5", "serif", True),
    "literata": ("3.103", "serif", True),
    "newsreader": ("1.3", "serif", True),
    "source-serif-4": ("4.4", "serif", True),
    "vollkorn": ("5.1", "serif", True),
    "alfa-slab-one": ("2.0", "display", True),
    "anton": ("2.116", "display", True),
    "baloo-2": ("1.700", "display", True),
    "black-ops-one": ("1.4", "display", True),
    "comfortaa": ("3.105", "display", True),
    "lobster": ("2.100", "display", False),
    "noto-sans-display": ("2.3", "display", True),
    "rowdies": ("1.0", "display", True),
    "caveat": ("2.0", "handwriting", False),
    "dancing-script": ("2.1", "handwriting", True),
    "great-vibes": ("1.103", "handwriting", True),
    "indie-flower": ("2.0", "handwriting", True),
    "pacifico": ("3.1", "handwriting", True),
    "ibm-plex-mono": ("2.3", "mono", True),
    "jetbrains-mono": ("2.211", "mono", True),
    "roboto-mono": ("3.1", "mono", True),
    "source-code-pro": ("1.26", "mono", True),
    "space-mono": ("1.3", "mono", False),
}


@dataclass(frozen=True)
class Face:
    """One font file of a family, with the weight range a variable font offers."""

    family: str
    path: Path
    style: str  # normal or italic
    weights: tuple[int, int] | None  # (min, max) of a variable font's wght axis


def install_hint(slugs: list[str]) -> str:
    pins = " ".join(f"fontpkg-{s}=={FAMILIES[s][0]}" for s in slugs)
    return f"pip install {pins}"


@functools.cache
def faces(slug: str) -> tuple[Face, ...]:
    """The family's font files, from its installed, pinned package."""
    import fontpkg

    try:
        family = fontpkg.family(slug)
    except fontpkg.FamilyNotInstalled:
        raise UserError(
            f"font package fontpkg-{slug} is not installed; the glyph benchmark needs it: "
            f"{install_hint([slug])}"
        ) from None
    wanted = FAMILIES[slug][0]
    installed = _package_version(slug)
    if installed is None or Version(installed) != Version(wanted):
        raise UserError(
            f"font package fontpkg-{slug} is {installed}, the glyph benchmark was built with "
            f"{wanted}: {install_hint([slug])}"
        )
    return tuple(
        Face(slug, Path(f.path), f.style, (f.wght_min, f.wght_max) if f.variable else None)
        for f in family.files
    )


def _package_version(slug: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(f"fontpkg-{slug}")
    except PackageNotFoundError:
        return None


def family_names(pretraining: bool | None = None) -> list[str]:
    """All families, or those used (True) or held out (False) for pretraining."""
    return [s for s, (_, _, pre) in FAMILIES.items() if pretraining is None or pre == pretraining]
