"""``python -m badsmtp``: the same as the ``badsmtp`` console script."""

import sys

from .cli import main

sys.exit(main())
