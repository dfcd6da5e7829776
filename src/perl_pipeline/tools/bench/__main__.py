"""``python -m perl_pipeline.bench``: see :mod:`perl_pipeline.tools.bench.cli`."""

import sys

from perl_pipeline.tools.bench.cli import main

sys.exit(main())
