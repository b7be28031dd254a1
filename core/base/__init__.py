"""Foundation: settings and paths (config), atomic writes and locks (files), the progress/cancel callback shape
(progress), the store (one TinyDB file per table, behind one lock), and the registry shape of extension points
(registries: one record per metric, novelty method or augmentation group, and the version of each set), demo mode
for public hosting (demo: the switch, caps, session and ownership rules), and a bounded run history
(run_history: prune_runs), and words for people (text: plural).

May import: nothing else from ``core``.
"""
