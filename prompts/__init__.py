"""Every prompt sleuth sends lives in this folder as a plain file.

``load_prompt("mmrv_cot")`` returns the text and its SHA-256, so that runs
and traces can record exactly which prompt version produced them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from sleuth.errors import ConfigError


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def available_prompts() -> list[str]:
    files = resources.files(__name__).iterdir()
    return sorted(f.name.rsplit(".", 1)[0] for f in files if f.name.endswith((".txt", ".md")))


@lru_cache(maxsize=None)
def load_prompt(name: str) -> Prompt:
    """Load ``prompts/<name>.txt`` or ``prompts/<name>.md`` verbatim."""
    root = resources.files(__name__)
    for suffix in (".txt", ".md"):
        path = root / f"{name}{suffix}"
        if path.is_file():
            # newline="" keeps the file's bytes exactly (templates are verbatim)
            with path.open("r", encoding="utf-8", newline="") as fh:
                return Prompt(name=name, text=fh.read())
    raise ConfigError(f"no prompt named {name!r}; available: {', '.join(available_prompts())}")


def prompt_hashes(names: list[str]) -> dict[str, str]:
    """Name -> SHA-256 for the prompts a run used (recorded in run configs and traces)."""
    return {n: load_prompt(n).sha256 for n in names}
