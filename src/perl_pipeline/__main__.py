"""`python -m perl_pipeline` runs the Kedro project like `kedro run`."""

from __future__ import annotations

import sys

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs):
    configure_project(__package__)
    return find_run_command(__package__)(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
