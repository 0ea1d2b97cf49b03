"""Entry point of the single ``badsmtp`` executable built by scripts/build-binary.

The same as the ``badsmtp`` console script (badsmtp.cli:main); PyInstaller needs
a file to start from, and a console script's wrapper is generated at install time.
"""

import sys

from badsmtp.cli import main

if __name__ == "__main__":
    sys.exit(main())
