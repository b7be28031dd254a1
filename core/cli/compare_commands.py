"""Command line: ``compare`` commands (filled in by issue 22's work)."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``python -m core`` parser."""
