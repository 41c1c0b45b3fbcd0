"""What only the book's chapters use: tables, saved results, subspaces and equal-terms comparisons.

Nothing outside ``aebook.book`` imports it: the library and the ``aebook`` command do not depend
on the chapters' helpers.

- :mod:`aebook.book.tables`: layer-by-layer shapes, best and worst cases, computed verdicts and goals.
- :mod:`aebook.book.results`: each chapter's headline numbers, saved for the conclusion.
- :mod:`aebook.book.subspace`: principal angles and the bottleneck sweep (chapters 2.1, 2.2).
- :mod:`aebook.book.compare`: tiled whole images and quantised latents, compared with JPEG (chapter 2.3).
"""
