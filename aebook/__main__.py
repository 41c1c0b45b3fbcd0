"""``python -m aebook`` runs the command-line interface."""

import sys

from aebook.cli import main

sys.exit(main())
