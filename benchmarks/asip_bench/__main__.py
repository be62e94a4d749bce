"""``python -m asip_bench``: the same as ``asip bench``."""

import sys

from asip_bench import main

if __name__ == "__main__":
    sys.exit(main())
