"""Entry point of ``python -m bench.episodes``."""

from bench.episodes.run import main

if __name__ == "__main__":
    raise SystemExit(main())
