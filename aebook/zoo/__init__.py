"""The model zoo: the weights shipped inside the package, by name, and the command that trains them.

- :mod:`aebook.zoo.registry`: the manifest (``weights/MANIFEST.json``), :func:`~aebook.zoo.registry.resolve` (a name
  to a hash-checked run folder), :func:`~aebook.zoo.registry.lineage` (the training stages behind a model), :func:`~aebook.zoo.registry.training_minutes`
  (their minutes per device), :func:`~aebook.zoo.registry.training_settings` (what its last stage trained with; an average's start's).
- :mod:`aebook.zoo.loading`: :func:`~aebook.zoo.loading.pretrained` (any shipped model, ``(model, config)``).
- :mod:`aebook.zoo.training`: the recipes and ``python -m aebook.train_pretrained``.
- ``weights/``: one run folder per model (safetensors + ``config.json``), and the manifest.
"""

from aebook.zoo.loading import pretrained
from aebook.zoo.registry import WEIGHTS_DIR, available, lineage, manifest, resolve, training_minutes, training_settings

__all__ = ["WEIGHTS_DIR", "available", "lineage", "manifest", "pretrained", "resolve", "training_minutes",
           "training_settings"]
