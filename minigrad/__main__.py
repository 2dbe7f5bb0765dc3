"""``python -m minigrad train ...`` (and the ``minigrad`` console script): see ``minigrad/cli.py``.

Read next: ``cli.py`` (the command itself).
"""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
