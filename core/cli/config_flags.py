"""Command-line flags made from the fields of a config dataclass, so every setting has one default and one help
text whether it is set in the app or on the command line (``train`` from :class:`core.learning.training.TrainConfig`,
``images add`` from :class:`core.curation.importing.ImportSettings`)."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Iterable


def add_config_flags(parser: argparse.ArgumentParser, config_type: type, *, only: Iterable[str] | None = None,
                     help_prefix: str = "") -> None:
    """One flag per field of a config dataclass (``only``: just these fields): name, type, default, choices and
    help from the field (its metadata: ``help``, ``flag``, ``choices``, ``metavar``); ``help_prefix`` goes before
    each help text (e.g. the action a flag belongs to)."""
    fields = dataclasses.fields(config_type)
    if only is not None:
        wanted = set(only)
        unknown = sorted(wanted - {f.name for f in fields})
        if unknown:
            raise ValueError(f"{config_type.__name__} has no fields {unknown}")
        fields = [f for f in fields if f.name in wanted]
    for f in fields:
        meta = f.metadata
        flags = [meta.get("flag", "--" + f.name.replace("_", "-"))]
        if "--" + f.name.replace("_", "-") not in flags:
            flags.append("--" + f.name.replace("_", "-"))
        text = help_prefix + meta.get("help", "")
        kw = {"dest": f.name, "help": f"{text} (default: %(default)s)"}
        if f.type == "bool":
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=f.default, **kw)
        elif f.type.startswith("tuple"):
            parser.add_argument(*flags, action="append", default=[], metavar=meta.get("metavar"),
                                **{**kw, "help": text})
        else:
            py_type = {"int": int, "float": float, "str": str, "int | None": int}[f.type]
            parser.add_argument(*flags, type=py_type, default=f.default, choices=meta.get("choices"), **kw)
