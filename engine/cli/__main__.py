"""``python -m engine.cli``: the same as the ``autodidact`` command."""

from engine.cli.app import main

main()
