"""``python -m automl_pt``: the ``automl-pt`` command line."""

import sys

from .cli import main

sys.exit(main())
