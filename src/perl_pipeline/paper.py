"""The command ``python -m perl_pipeline.paper``; the tool lives in :mod:`perl_pipeline.tools.paper`."""

from perl_pipeline.tools.paper import main

if __name__ == "__main__":
    raise SystemExit(main())
