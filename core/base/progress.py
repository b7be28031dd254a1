"""The one shape of progress and cancel shared by every long function (training, inference, anchors, builds).

A long function takes ``progress: ProgressFn | None`` and ``should_stop: StopFn | None`` keyword arguments. It
calls ``progress(fraction, message, entry)`` with ``fraction`` in [0, 1], and raises :class:`Cancelled` as soon
as ``should_stop()`` turns true. ``entry`` (optional) carries a record worth keeping, such as one epoch of a
training history; an entry with ``"batch": True`` is a live curve point instead, drawn while the run lasts but not
kept in its history (:func:`is_batch_point`). A run (:mod:`core.runs`) hands both to its worker; the CLI prints;
tests pass nothing.
"""
from __future__ import annotations

from typing import Callable, Protocol


class Cancelled(Exception):
    """Raised inside long work when it was asked to stop; nothing it would have produced is kept."""


class ProgressFn(Protocol):
    def __call__(self, fraction: float, message: str = "", entry: dict | None = None) -> None: ...


StopFn = Callable[[], bool]


def is_batch_point(entry: dict | None) -> bool:
    """True for a live training-curve point (drawn while the run lasts), False for a history entry or none."""
    return bool(entry) and bool(entry.get("batch"))


def silent(fraction: float, message: str = "", entry: dict | None = None) -> None:
    """A :class:`ProgressFn` that reports nothing."""


def never() -> bool:
    """A :data:`StopFn` that never asks to stop."""
    return False


def check(should_stop: StopFn | None, what: str = "stopped by request") -> None:
    """Raise :class:`Cancelled` if ``should_stop`` says so."""
    if should_stop is not None and should_stop():
        raise Cancelled(what)


def sub_range(progress: ProgressFn | None, start: float, end: float, message: str = "") -> ProgressFn:
    """A :class:`ProgressFn` that maps [0, 1] onto [start, end] of ``progress`` (``message`` if none is given)."""
    def report(fraction: float, msg: str = "", entry: dict | None = None) -> None:
        if progress is not None:
            progress(start + (end - start) * min(max(fraction, 0.0), 1.0), msg or message, entry)
    return report


def describe_seconds(seconds: float) -> str:
    """'about 40 s', 'about 3 min', 'about 1 h 20 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"about {max(s, 1)} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"
