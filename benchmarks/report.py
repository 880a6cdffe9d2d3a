"""Render ``bench_neurons.py --json`` results as the markdown tables of docs/benchmarks.md.

    python benchmarks/report.py bench.json > tables.md

One table per backend: a row per (neuron, dtype, T), time and % of the copy floor for
inference and forward+backward, CUDA-graph replay (the kernels) and eager (one call).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

ORDER = ("triton", "cupy", "flexsn", "torch")
MODES = ("inference graph", "fwd+bwd graph", "inference eager", "fwd+bwd eager")


def render(results: dict) -> str:
    table: dict[str, dict[tuple, dict[str, tuple[float, float]]]] = defaultdict(dict)
    for row in results["rows"]:
        key = (row["neuron"], row["dtype"], row["T"])
        table[row["backend"]].setdefault(key, {})[row["mode"]] = (row["ms"], row["floor_pct"])
    lines = []
    for backend in sorted(table, key=lambda b: ORDER.index(b) if b in ORDER else len(ORDER)):
        modes = [m for m in MODES if any(m in cells for cells in table[backend].values())]
        lines += [
            f"### {backend}",
            "",
            "| neuron | dtype | T | " + " | ".join(modes) + " |",
            "|---|---|---|" + "---|" * len(modes),
        ]
        for (neuron, dtype, T), cells in sorted(table[backend].items()):
            values = [
                f"{cells[m][0]:.3f} ms ({cells[m][1]:.0f}%)" if m in cells else "-" for m in modes
            ]
            lines.append(f"| {neuron} | {dtype} | {T} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python benchmarks/report.py bench.json", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        results = json.load(f)
    print(f"Copy bandwidth (read + write): {results['copy_bandwidth'] / 1e12:.3f} TB/s.\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
