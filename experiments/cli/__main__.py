"""``python -m experiments.cli``: the same as the ``sched-env`` command."""

import sys

from experiments.cli import main

sys.exit(main())
