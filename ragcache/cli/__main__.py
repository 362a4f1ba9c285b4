"""``python -m ragcache.cli``: the same as the ``ragcache`` console script."""

from ragcache.cli import main

main()
