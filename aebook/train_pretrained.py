"""``python -m aebook.train_pretrained``: the command that trained every shipped model.

The manifest (``aebook/zoo/weights/MANIFEST.json``) records each model's command under this
module path, so it stays here; what it runs, the recipes and the manifest's upkeep, is
:mod:`aebook.zoo.training`.
"""

from __future__ import annotations

import sys

from aebook.zoo.training import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
