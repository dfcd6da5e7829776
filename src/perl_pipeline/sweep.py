"""The command ``python -m perl_pipeline.sweep``; the tool lives in :mod:`perl_pipeline.tools.sweep`."""

from perl_pipeline.tools.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
