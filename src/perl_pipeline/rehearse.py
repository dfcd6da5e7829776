"""The command ``python -m perl_pipeline.rehearse``; the tool lives in :mod:`perl_pipeline.tools.rehearse`."""

from perl_pipeline.tools.rehearse import main

if __name__ == "__main__":
    raise SystemExit(main())
