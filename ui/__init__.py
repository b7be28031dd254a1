"""The page layer's shared helpers (``pages/`` holds only the routed pages, ``Home.py`` routes them).

- :mod:`ui.cache`: cached wrappers around core (a dataset's index, a model file's network and novelty detector,
  run recovery); caching lives here, never in core.
- :mod:`ui.widgets`: pickers, a clickable thumbnail grid, the Integrated Gradients figure, model stats, run progress.
- :mod:`ui.evaluate_views`, :mod:`ui.explain_views`: the Evaluate page's report, slices and explanation panels.
- :mod:`ui.compare_views`: the Evaluate page's comparison of two models (counts, McNemar, disagreement grids).
- :mod:`ui.issues_views`: the Explore page's data issues as tables with their actions and undo.
- :mod:`ui.export_views`: download buttons (a workspace zip, a model file and card, a report's CSV and JSON).
- :mod:`ui.train_views`, :mod:`ui.map_views`: the Improve page's run and comparison views; the Visualise page's
  cached map, compute button, colours and shapes.
- :mod:`ui.nav`: routing guards: ``ensure_router`` (a first visit to a page URL goes through Home.py's router),
  reruns and fragment timer ticks that never undo a user's click on another page.

May import: streamlit, plotting libraries and ``core`` (any layer). Core never imports ``ui``.
"""
