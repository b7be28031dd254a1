"""Traffic-sign workbench core: all logic, never imports streamlit.

Packages by concern, lowest layer first; a module imports only its own package and the layers below it
(``tests/test_architecture.py`` checks this, and that there is no import cycle)::

    core.base      config, atomic files and locks, progress/cancel callbacks, the store, the registry shape
    core.runs      the run engine: records, workers, progress, cancel, resume (knows no domain)
    core.data      images, built datasets, workspaces, the dataset catalog, importers, builds, augmentation, uploads
    core.learning  networks, inference, training, distributed training, the model registry
    core.analysis  metrics, evaluation, reports, explanations, novelty, maps, data issues, corruptions, prediction
    core.curation  adding images to workspaces with a model's help (imports, smart segregation)
    core.cli       the command line (``python -m core``); core.kinds registers every run kind

Each run kind lives next to the code it runs and registers itself with the engine; see docs/architecture.md.
"""
