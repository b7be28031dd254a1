"""Analysis: metrics, evaluation and reports, explanations (Integrated Gradients, anchors), novelty detection,
feature maps and new-class groups, data issues, the corruption benchmark, and prediction on new images.

May import: ``core.base``, ``core.runs``, ``core.data``, ``core.learning``.
"""
