import sys

from worker.cli import main

# Guarded: a decode process started with "spawn" imports the parent's main module.
if __name__ == "__main__":
    sys.exit(main())
