"""Runs: the engine for all long work. (Interim: the engine module still holds the run kinds.)"""
from core.runs.engine import *  # noqa: F401,F403
from core.runs.engine import KINDS, _kind  # noqa: F401
