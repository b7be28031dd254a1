"""Analysis: metrics, evaluation and reports, explanations (Integrated Gradients, anchors), novelty detection,
feature maps and new-class groups, data issues (data_issues; label_issues: confident learning on out-of-sample
probabilities; label_actions: acting on findings), model diffs (model_diff: McNemar and a test by track,
disagreement sets), underperforming slices (slices), report export (report_export), the corruption benchmark, and
prediction on new images.

May import: ``core.base``, ``core.runs``, ``core.data``, ``core.learning``.
"""
