"""MMR-V's category system: ability types (L2, L3), Implicit vs Explicit, video types.

Raw records spell things inconsistently (``"art"`` and ``"Art"``, stray
spaces); everything that groups questions goes through the normalisers here
so that a category is counted once.
"""

from __future__ import annotations

from typing import Literal

Category = Literal["implicit", "explicit", "unknown"]

# The five implicit-reasoning ability types (L2) and the five explicit ones, as the paper defines them.
IMPLICIT_L2: tuple[str, ...] = (
    "Metaphor Understanding",
    "Theme Understanding",
    "Emotion Recognition",
    "Implicit Symbol",
    "Comment Matching",
)
EXPLICIT_L2: tuple[str, ...] = (
    "Counterintuitive Reasoning",
    "Causal Reasoning",
    "Sequential Structure Reasoning",
    "Video Type and Intent",
    "Cross-modal Creative Transfer",
)
ALL_L2: tuple[str, ...] = IMPLICIT_L2 + EXPLICIT_L2

_L2_BY_KEY = {name.casefold(): name for name in ALL_L2}

# Video types as the benchmark's records use them. "movie" is what the data says
# (the paper's figures call it "Film"); it is kept, with its casing normalised,
# rather than silently merged.
VIDEO_TYPES: tuple[str, ...] = ("Animation", "Art", "Film", "Life", "Movie", "Philosophy", "TV")
_VIDEO_TYPE_BY_KEY = {name.casefold(): name for name in VIDEO_TYPES}


def _squash(text: str) -> str:
    return " ".join(str(text).split())


def normalise_l2(name: str | None) -> str:
    """Canonical spelling of an L2 ability type; unknown names are kept (whitespace tidied)."""
    if not name:
        return ""
    tidy = _squash(name)
    return _L2_BY_KEY.get(tidy.casefold(), tidy)


def normalise_l3(name: str | None) -> str:
    return _squash(name) if name else ""


def normalise_video_type(name: str | None) -> str:
    """``"art"`` -> ``"Art"``, ``"tv"`` -> ``"TV"``, ``"movie"`` -> ``"Movie"``; unknown types are title-cased."""
    if not name:
        return ""
    tidy = _squash(name)
    known = _VIDEO_TYPE_BY_KEY.get(tidy.casefold())
    if known:
        return known
    return tidy[:1].upper() + tidy[1:]


def category_of(l2: str | None) -> Category:
    """Implicit or Explicit reasoning, from the L2 ability type."""
    canonical = normalise_l2(l2)
    if canonical in IMPLICIT_L2:
        return "implicit"
    if canonical in EXPLICIT_L2:
        return "explicit"
    return "unknown"
