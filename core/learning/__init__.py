"""Learning: the networks and checkpoints (models), batched inference, training (incremental, transfer,
distillation, outlier exposure: training, with its settings in training_config and one epoch's pieces in epoch;
bn_pool and narrow_conv: CPU training steps of a few layers, the same function computed faster; memory: the
allocator's thresholds for a training process),
distributed training, the model registry, the comparison of a trained model with its base (vs_base) and the
TorchScript export with its card (export).

May import: ``core.base``, ``core.runs``, ``core.data``.
"""
