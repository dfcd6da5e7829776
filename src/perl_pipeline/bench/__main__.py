"""``python -m perl_pipeline.bench``: see :mod:`perl_pipeline.bench.cli`."""

import sys

from perl_pipeline.bench.cli import main

sys.exit(main())
