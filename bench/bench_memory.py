"""Peak memory of the app on the embedded sample (Streamlit Community Cloud gives about 1 GB).

    python bench/bench_memory.py

Runs the app in-process with Streamlit's AppTest (the same scripts ``streamlit run`` executes), in a fresh data
root: opens every page, runs one evaluation of the shipped benchmark on the sample's test split and opens its
report, then prints the process's peak resident memory (``ru_maxrss``). Goal < 1 GB.
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ["TSW_DATA_ROOT"] = tempfile.mkdtemp(prefix="bench-memory-")

from streamlit.runtime.pages_manager import PagesManager  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from core import runs  # noqa: E402

PAGES = ["pages/explore.py", "pages/visualise.py", "pages/add_classes.py", "pages/add_images.py",
         "pages/added_images.py", "pages/evaluate.py", "pages/improve.py", "pages/predict.py"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # route through Home.py as the server does after its first run
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init
    at = AppTest.from_file(str(PROJECT / "Home.py"), default_timeout=300)
    at.run()
    print(f"home: peak {peak_mb():.0f} MB")
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)
        print(f"{page}: peak {peak_mb():.0f} MB")
    at.switch_page("pages/evaluate.py")
    at.run()
    at.selectbox(key="eval_dataset").set_value("Sample48")
    at.button(key="eval_run").click().run()
    runs.wait(at.session_state["eval_report"], timeout=600)
    at.run()
    assert not at.exception, at.exception
    print(f"after one evaluation and its report: peak {peak_mb():.0f} MB (goal < 1,000 MB)")


if __name__ == "__main__":
    main()
