"""``python -m pipeline_coverage``: the same as the ``pipeline-coverage`` command."""

import sys

from pipeline_coverage.cli import main

sys.exit(main())
