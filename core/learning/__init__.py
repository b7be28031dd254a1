"""Learning: the networks and checkpoints (models), batched inference, training (incremental, transfer,
distillation, outlier exposure: training, with its settings in training_config and one epoch's pieces in epoch),
distributed training, and the model registry.

May import: ``core.base``, ``core.runs``, ``core.data``.
"""
