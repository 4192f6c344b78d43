"""``python -m webhook`` runs the ``pushbuild`` command."""

from .cli import main

main(prog_name="pushbuild")
