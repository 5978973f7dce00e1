"""Label computation throughput (RDKit QED, peptides BLOSUM1): one worker against all cores.

    python bench/prepare.py [--repeats 3] [--json out.json]

Prints rows/s for each label with 1 and with N workers (median of the repeats) and their ratio,
measured side by side in one run on the embedded default's molecules and proteins.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from tagllm.data.labels import compute_labels
from tagllm.data.molecules import canonical_molecules, rdkit_nci_path, read_smi
from tagllm.data.proteins import pyhmmer_proteome_path, read_fasta, valid_proteins
from tagllm.data.validation import Rejections
from tagllm.precision import cpu_identity, describe_cpu


def inputs() -> dict[str, list[str]]:
    molecules = canonical_molecules(read_smi(rdkit_nci_path()), "nci", 512, Rejections())
    proteins = valid_proteins(read_fasta(pyhmmer_proteome_path()), "pyhmmer", 100_000, Rejections())
    return {"qed": [m["smiles"] for m in molecules], "blosum1": [p["sequence"] for p in proteins]}


def rows_per_second(kind: str, values: list[str], workers: int, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        compute_labels(kind, values, workers)
        timings.append(time.perf_counter() - started)
    return len(values) / statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the 'all' setting")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    results = {"cpu": cpu_identity()}
    print(describe_cpu())
    for kind, values in inputs().items():
        one = rows_per_second(kind, values, 1, args.repeats)
        many = rows_per_second(kind, values, args.workers, args.repeats)
        results[kind] = {"rows": len(values), "rows_per_s_1_worker": one,
                         f"rows_per_s_{args.workers}_workers": many, "speedup": many / one}
        print(f"{kind:8s} {len(values):5d} rows  1 worker {one:8.0f} rows/s  "
              f"{args.workers} workers {many:8.0f} rows/s  ratio {many / one:.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
