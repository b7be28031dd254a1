"""Data: the one image loader and preprocessing (images), immutable built datasets (built), user-changed workspaces
(workspaces: reading and versions; workspace_changes: the change transaction, undo, classes), the catalog that
resolves a dataset name to either (datasets), importers and builds of the full datasets, augmentation groups
(augment: albumentations pipelines; batch_augment with batch_transforms: the same groups applied batch by batch
in the training thread, the trainer's fast engine), safe upload reading, demo mode's upload and workspace-disk quotas
(quotas), near-duplicate descriptors, browsing, and the dataset export (export: a zip of class folders plus
labels.csv that the folder importer reads back).

May import: ``core.base``, ``core.runs`` (to register its run kinds).
"""
