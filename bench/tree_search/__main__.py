"""Entry point of ``python -m bench.tree_search``."""

from bench.tree_search.run import main

if __name__ == "__main__":
    raise SystemExit(main())
