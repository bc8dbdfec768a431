"""Entry point of ``python -m bench.lineage``."""

from bench.lineage.run import main

if __name__ == "__main__":
    raise SystemExit(main())
