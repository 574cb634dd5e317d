"""``python -m flowlab ...`` is the ``flowlab`` command (also under ``torchrun -m flowlab``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
