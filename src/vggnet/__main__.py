"""`python -m vggnet ...` runs the `vggnet` command."""

import sys

from .cli import main

sys.exit(main())
