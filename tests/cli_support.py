"""The command line, run the way ``python -m core`` runs it but inside the test process: the same ``main(argv)``,
exit code, stdout and stderr, without a new interpreter importing torch for every call (3 s each). Tests that need
a real process (kill -9, Ctrl-C, the entry point itself) pass ``real_process=True``."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from core.cli.main import main

PROJECT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _environment(root: Path):
    """TSW_DATA_ROOT set to ``root`` and the project as the working directory, both restored afterwards."""
    old_root, old_cwd = os.environ.get("TSW_DATA_ROOT"), os.getcwd()
    os.environ["TSW_DATA_ROOT"] = str(root)
    os.chdir(PROJECT)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_root is None:
            os.environ.pop("TSW_DATA_ROOT", None)
        else:
            os.environ["TSW_DATA_ROOT"] = old_root


def run_cli(*args: str, root: Path, real_process: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` over data root ``root``: a CompletedProcess with its exit code and output."""
    args = tuple(str(a) for a in args)
    if real_process:
        env = dict(os.environ, TSW_DATA_ROOT=str(root), NO_ALBUMENTATIONS_UPDATE="1")
        return subprocess.run([sys.executable, "-m", "core", *args], cwd=PROJECT, env=env, capture_output=True,
                              text=True, timeout=timeout)
    out, err = io.StringIO(), io.StringIO()
    with _environment(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help (0) and usage errors (2)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
    return subprocess.CompletedProcess(["python", "-m", "core", *args], code or 0, out.getvalue(), err.getvalue())
