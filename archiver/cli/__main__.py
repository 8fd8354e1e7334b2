"""``python -m archiver.cli``: the ``archiver`` console script."""

import sys

from archiver.cli import main

sys.exit(main())
