"""``python -m asip.bench``: the same as ``asip bench``."""

import sys

from asip.bench import main

if __name__ == "__main__":
    sys.exit(main())
