"""Entry point for `python -m tagllm`."""

from tagllm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
