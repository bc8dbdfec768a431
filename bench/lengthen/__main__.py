"""Entry point of ``python -m bench.lengthen``."""

from bench.lengthen.run import main

if __name__ == "__main__":
    raise SystemExit(main())
