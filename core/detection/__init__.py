"""Detection: finding signs in street photos and dashcam video, classifying each candidate, tracking signs across
frames and harvesting crops into training data.

- ``boxes``: box arithmetic (IoU, non-maximum suppression, mapping between image sizes).
- ``results``: the :class:`Detection` and :class:`FileResult` records every caller (page, CLI, runs) shares.
- ``scenes``: the seeded scene generator (sign crops pasted on real sign-free photos, with ground-truth boxes).
- ``detector``: the shipped learned detector (a small fully convolutional centre-heatmap network on an image
  pyramid); ``classical``: colour-proposal detection, the approach it was compared against.
- ``pipeline``: detector -> crops -> classifier with novelty rejection, for images and videos.
- ``video``: sampling frames from a video file; ``tracking``: one physical sign across frames -> one track.
- ``harvest``: detections -> workspace images with provenance; ``detect_run``: the ``detect`` run kind.

May import: ``core.base``, ``core.runs``, ``core.data``, ``core.learning``, ``core.analysis``, ``core.curation``.
"""
