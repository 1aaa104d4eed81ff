"""`python -m cli`, the same as the `stride` console script."""

from cli.main import main

main()
