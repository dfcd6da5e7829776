"""The command ``python -m perl_pipeline.bench``; the tool lives in :mod:`perl_pipeline.tools.bench`."""

from perl_pipeline.tools.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
