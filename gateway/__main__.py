"""`python -m gateway` is the `credgate` command."""

from gateway.cli import main

main()
