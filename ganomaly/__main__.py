import sys

from ganomaly.cli.main import main

# Guarded: a decode process started with "spawn" imports the parent's main module.
if __name__ == "__main__":
    sys.exit(main())
