r"""The ``otflows`` command line: its commands (:mod:`~otflows.cli.commands`), their
arguments (:mod:`~otflows.cli.arguments`) and the demo (:mod:`~otflows.cli.demo`)."""

from otflows.cli.commands import main

__all__ = ["main"]
