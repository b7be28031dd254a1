"""The allocator settings for CPU training: large maps stay in the heap from step to step."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.learning import memory

ROOT = Path(__file__).resolve().parent.parent
# Make and free two 40 MB maps 20 times, as a training step does; print the minor page faults that took. (Above
# 32 MB, glibc's adaptive threshold cannot grow to them, so without the setting every map is faulted in anew.)
PROBE = """
import resource, sys, torch
from core.learning import memory
applied = memory.keep_freed_maps() if sys.argv[1] == "on" else False
x = torch.randn(128, 40, 44, 44)
for _ in range(3):
    y = x * 2; z = y + 1; del y, z
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y = x * 2; z = y + 1; del y, z
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_maps_stay_in_the_heap_where_the_c_library_is_glibc():
    applied, faults_on = _faults("on")
    _, faults_off = _faults("off")
    assert applied == "True"
    pages = 128 * 40 * 44 * 44 * 4 // 4096  # one map
    assert faults_off >= 35 * pages  # fresh maps faulted in again and again
    assert faults_on < 8 * pages  # the same memory reused


def test_it_changes_nothing_on_another_c_library_or_under_the_users_own_settings(monkeypatch):
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert memory._apply() is False
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory._apply() is False
