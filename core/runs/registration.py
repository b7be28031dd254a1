"""Run kinds: the one table of what can run, filled by the kinds themselves (torchvision's model-registry shape).

A kind registers itself next to the code it runs, when its module is imported::

    register_kind("evaluate", EvaluateRun, run_evaluate, limit=config.MAX_CONCURRENT_EVALUATIONS)

Its config is a frozen dataclass (:class:`RunConfig`): ``check()`` validates it against the world (raising
ValueError with the fix) and returns the fingerprints of what the run will read; ``title()`` names the run. The
runner does the work: ``runner(ctx, cfg) -> result`` (a JSON-able dict). A kind whose config nests other
dataclasses gives ``from_json`` to rebuild it from the record; a kind that saves a resumable state gives
:class:`Resume` hooks. :mod:`core.kinds` imports every kind module, so that all of them are registered.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Protocol

from core.base.registries import Registry
from core.runs.context import RunContext


class RunConfig(Protocol):
    """What the engine asks of a kind's config dataclass."""

    def check(self) -> dict: ...

    def title(self) -> str: ...


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run picks up, as its record shows it until the first new tick."""

    #: fraction of the work already done
    progress: float
    message: str
    #: the history entries the saved state holds (later ones are dropped)
    history: list
    #: the live curve points to keep
    curve: list


@dataclass(frozen=True)
class Resume:
    """How a kind continues a stopped run under the same id."""

    #: what users call runs of this kind, in messages ("only training runs can be resumed")
    what: str
    #: record -> whether the run saved a state to continue from
    has_state: Callable[[dict], bool]
    #: (record, config, fresh inputs from ``config.check()``) -> where to pick up; ValueError with the reason when
    #: the state cannot be continued (unreadable, inputs changed)
    prepare: Callable[[dict, Any, dict], ResumePoint]
    #: added to the message of an interrupted run that has a state
    hint: str = "resume it"


@dataclass(frozen=True)
class RunKind:
    name: str
    config: type
    runner: Callable[[RunContext, Any], dict]
    #: most runs of this kind at once; the rest queue
    limit: int = 1
    #: the config from its JSON form in the record; None: the config's own fields (:func:`config_from_fields`)
    from_json: Callable[[dict], Any] | None = None
    resume: Resume | None = None
    #: raised when what a run of this kind computes changes (the registries' record shape)
    version: int = 1


#: Every registered kind by name, in registration order (``KINDS.table`` is the plain dict).
KINDS: Registry[RunKind] = Registry("run kind")


def register_kind(name: str, config: type, runner: Callable[[RunContext, Any], dict], *, limit: int = 1,
                  from_json: Callable[[dict], Any] | None = None, resume: Resume | None = None,
                  version: int = 1) -> RunKind:
    """Make ``name`` startable with :func:`core.runs.start`; returns its record.

    Registering a name again with the same config class (a reloaded module) replaces the record; another class
    under a taken name is refused.
    """
    if not is_dataclass(config):
        raise TypeError(f"run kind {name!r}: its config must be a dataclass, got {config!r}")
    if limit < 1:
        raise ValueError(f"run kind {name!r}: limit must be at least 1, got {limit}")
    kind = RunKind(name, config, runner, limit=limit, from_json=from_json, resume=resume, version=version)
    old = KINDS.table.get(name)
    if old is not None and _qualname(old.config) == _qualname(config):
        KINDS.table[name] = kind  # its module was imported again (Streamlit reloads edited modules)
        return kind
    return KINDS.add(kind)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def get_kind(name: str) -> RunKind:
    """The record of a registered kind; ValueError listing the valid kinds for an unknown one."""
    return KINDS.get(name)


def find_kind(name: str) -> RunKind | None:
    """The record of ``name``, or None for work that is not a registered kind (:func:`core.runs.submit`)."""
    return KINDS.table.get(name)


def kind_names() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return KINDS.names()


def concurrency_limit(name: str) -> int:
    """Most runs of ``name`` at once (1 for work that is not a registered kind)."""
    kind = find_kind(name)
    return kind.limit if kind else 1


def config_from_fields(cls: type, data: dict, *, kind: str, **given: Any):
    """A config dataclass from its JSON fields: unknown fields refused, JSON lists back to tuples where the field
    is a tuple. ``given`` are fields the caller has rebuilt itself (nested configs)."""
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{kind} config has unknown fields {unknown}; valid: {', '.join(sorted(names))}")
    values = {k: tuple(v) if isinstance(v, list) and str(names[k].type).startswith("tuple") else v
              for k, v in data.items() if k not in given}
    return cls(**values, **given)


def config_from_json(kind: str, data: dict):
    """The config dataclass of ``kind`` from its JSON form (as kept in the run record)."""
    spec = get_kind(kind)
    return spec.from_json(dict(data)) if spec.from_json else config_from_fields(spec.config, dict(data), kind=kind)
