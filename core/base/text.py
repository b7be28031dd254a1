"""Words for people: counts with the right plural."""
from __future__ import annotations


def plural(n: int, word: str = "image", many: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``, ``"1,204 images"``; ``many`` for an irregular plural (``"class"``,
    ``"classes"``)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
