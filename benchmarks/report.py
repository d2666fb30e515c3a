"""Renders every published table from its JSON (`--check`: only reports pages out of date)."""

import sys

from otflows.bench.report import main

if __name__ == "__main__":
    sys.exit(main())
