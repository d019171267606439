"""``python -m ingot_lab``: the lab command line."""

import sys

from ingot_lab.cli import main

if __name__ == '__main__':
    sys.exit(main())
