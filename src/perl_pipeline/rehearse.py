"""The command ``python -m perl_pipeline.rehearse``; the tool lives in :mod:`perl_pipeline.tools.rehearse`."""

import sys

from perl_pipeline.tools.rehearse.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
