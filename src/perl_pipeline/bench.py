"""The command ``python -m perl_pipeline.bench``; the tool lives in :mod:`perl_pipeline.tools.bench`."""

import sys

from perl_pipeline.tools.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
