"""``python -m labric.cli``: the ``labric`` command."""

import sys

from labric.cli import main

sys.exit(main())
