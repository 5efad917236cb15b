"""``python -m barkeeper`` is the ``barkeeper`` command."""

from barkeeper.cli import main

main()
