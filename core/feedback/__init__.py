"""Feedback learning: "make more like these" — new labelled images near the images a model gets wrong.

- ``sources``: the mistakes to start from (a report's misclassified or low-confidence images, or images of a
  dataset picked by file), each with its image, true class and the model's verdict;
- ``methods``: the generation methods, one registry record each (targeted augmentation, latent neighbours from
  the class-conditional generator, activation-maximisation patches, and the control: copies of the real image);
- ``generator`` (+ ``generator_training``): the small class-conditional VAE trained here on CPU at 32 px, its
  checkpoint, projection of an image into its latent space and sampling near it;
- ``quality``: FID and KID on our own classifier's penultimate features;
- ``generate``: the public entry (generate, preview files, add to a workspace with provenance);
- ``generate_run``: the "generate" run kind.

May import: ``core.base``, ``core.runs``, ``core.data``, ``core.learning``, ``core.analysis``, ``core.curation``.
"""
