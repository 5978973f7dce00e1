"""Entry point for `python -m tagllm`."""

import gc

from tagllm.cli import main

if __name__ == "__main__":
    status = main()
    # The interpreter's last collection walks every object torch and transformers made (1.4 s a
    # model job on a 2-core CPU, ~30 of them in the default); frozen objects are skipped. Outputs
    # are written and closed by now, and atexit handlers still run.
    gc.freeze()
    raise SystemExit(status)
