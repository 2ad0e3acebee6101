"""``python -m edgechain.cli``: the same as the ``edgechain`` command."""

import sys

from edgechain.cli import main

sys.exit(main())
