"""Every run kind, registered: import this module before starting runs by name (the app's ``Home.py``, the CLI,
the tests' ``conftest.py`` do).

Each kind lives next to the code it runs and registers itself with :func:`core.runs.register_kind` when its module
is imported; adding a kind is a new module there plus one line here, never a change to the engine. The order of
the lines is the order in which kinds are listed (``runs list --kind``, error messages).
"""
from core.learning import train_run  # noqa: F401
from core.analysis import evaluate_run  # noqa: F401
from core.analysis import anchor_run  # noqa: F401
from core.data import build_run  # noqa: F401
from core.curation import import_run  # noqa: F401
from core.analysis import embed_run  # noqa: F401
from core.analysis import issues_run  # noqa: F401
from core.detection import detect_run  # noqa: F401
from core.feedback import generate_run  # noqa: F401
