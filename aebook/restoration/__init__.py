"""Image restoration: damage, classical restorers, the restoration network and its evaluation (chapter 4).

- :mod:`aebook.restoration.damage`: damage models on images (noise, masks, low resolution,
  exposure) and on torch batches.
- :mod:`aebook.restoration.tasks`: the restoration tasks (how training pairs are made).
- :mod:`aebook.restoration.classical`: the classical, training-free restorers (biharmonic, TV,
  wavelets, NL-means, BM3D, bicubic, histogram equalisation, gray world).
- :mod:`aebook.restoration.nets`: the residual restoration network and its run folders.
- :mod:`aebook.restoration.inference`: seam-free tiled inference and ``restore_image``.
- :mod:`aebook.restoration.training`: ``train_restorer``.
- :mod:`aebook.restoration.evaluate`: every method on the same damaged held-out photos, scored and timed.
"""
