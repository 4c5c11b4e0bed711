"""``python -m fieldops``: the ``fieldops`` command, with its exit code."""

import sys

from fieldops.cli import main

if __name__ == "__main__":
    sys.exit(main())
