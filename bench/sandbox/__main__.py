"""Entry point of ``python -m bench.sandbox``."""

from bench.sandbox.run import main

if __name__ == "__main__":
    raise SystemExit(main())
