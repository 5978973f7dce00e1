"""Expected GPU hours of the paper preset (presets/paper.yaml: LLaMA-7B, the paper's datasets), per stage
and task, for docs/cluster.md.

Every figure printed is an ESTIMATE: dataset sizes (sourced where a source was found, otherwise a labelled
assumption, see tagllm/gpu_figures.py), typical tokens per row, and a throughput that is either modelled
(peak TFLOP/s x MFU) or measured by bench/gpu_check.py on the LLaMA-7B shape (--measured-json). Nothing is
downloaded and no model is loaded; it runs in well under a second.

    python bench/gpu_hours.py                                 # A100 bf16, MFU 0.4 (modelled)
    python bench/gpu_hours.py --measured-json gpu_check.json  # tokens/s measured by bench/gpu_check.py
    python bench/gpu_hours.py --set ba_train_val_rows=120000 --json hours.json --detail

The cost model (its docstring says what each FLOP count is) and the figures live in
tagllm/gpu_hours.py and tagllm/gpu_figures.py, which
`python -m tagllm preflight` also uses (with the row counts and lengths of the prepared data present);
this script is their command line, on the figures alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tagllm.gpu_hours import ROOT, compute


def parse_overrides(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--set {key}: {value!r} is not a number") from None
    return out



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peak-tflops", type=float, default=312.0,
                        help="dense bf16 peak of one GPU (default 312: A100; H100/H200 989)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model-FLOPs utilisation (default 0.4)")
    parser.add_argument("--measured-json", default="",
                        help="bench/gpu_check.py --json output: use its measured tokens/s instead")
    parser.add_argument("--preset", default=str(ROOT / "presets/paper.yaml"),
                        help="preset to read epochs, tag length and test sizes from")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one figure (see --list), e.g. ba_train_val_rows=120000")
    parser.add_argument("--detail", action="store_true", help="one table row per job")
    parser.add_argument("--list", action="store_true", help="print every figure with its source")
    parser.add_argument("--json", default="", help="also write the full report as JSON here")
    args = parser.parse_args(argv)
    measured = args.measured_json if args.measured_json and Path(args.measured_json).is_file() else None
    if args.measured_json and measured is None:
        print(f"note: {args.measured_json} not found; using the MFU model", file=sys.stderr)
    try:
        report = compute(args.peak_tflops, args.mfu, measured, parse_overrides(args.overrides),
                         args.preset, args.detail)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(report["markdown"])
    if args.list:
        print()
        for key, figure in report["figures"].items():
            print(f"{key} = {figure['value']:,.10g}  [{figure['source']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
