"""Entry point of ``python -m bench.stream``."""

from bench.stream.run import main

if __name__ == "__main__":
    raise SystemExit(main())
