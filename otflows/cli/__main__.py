r"""``python -m otflows.cli``: the command line, as the ``otflows`` script runs it."""

import sys

from otflows.cli.commands import main

sys.exit(main())
