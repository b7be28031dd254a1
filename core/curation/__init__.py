"""Curation: adding images to a workspace with a model's help (duplicate and leakage checks, smart segregation of
train and val by the model's features, variants), and editing added images.

May import: ``core.base``, ``core.runs``, ``core.data``, ``core.learning``, ``core.analysis``.
"""
