"""CPU precision chosen by measuring: bf16 autocast for gradient-free passes only where this CPU runs
the model's own matrix products clearly faster in bf16 than in float32.

CPUs with bf16 matrix units (AMX; AVX512-BF16) run a bf16 forward pass 2-3x faster than float32.
Without them (AVX2-only CPUs: most laptops, many cloud VMs) PyTorch emulates bf16 and the same pass is
up to 6x slower. The CPU flags alone do not settle it (oneDNN's kernels, thread counts and shapes
decide), so `choose` times one decoder layer's projections at the model's own sizes both ways, in
alternation (so that load from other jobs falls on both alike), which takes a fraction of a
second, and takes bf16 only when it wins by `MIN_SPEEDUP`. `true` and `false`
force the choice. Every run records the result (`Precision.to_json`) with the CPU it ran on.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

SETTINGS = ("auto", "true", "false")
# bf16 is taken only when it is at least this much faster: a near tie is not worth bf16's rounding,
# and the timing of a shared machine moves by ~15%.
MIN_SPEEDUP = 1.25
# Rows of the timed products: about a batch of cached-prefix or tag positions of the default run.
ROWS = 128
# Products larger than this in a dimension are timed at this size, so that the measurement of a
# 7B model's layer on a CPU still takes well under a second (the ratio is a property of the kernels).
MAX_TIMED_DIM = 2048
REPEATS = 5
BF16_FLAGS = ("amx_bf16", "avx512_bf16")

# (rows, [(out_features, in_features), ...]) -> a function: bf16 -> milliseconds for one pass
Timer = Callable[[int, Sequence[tuple[int, int]]], Callable[[bool], float]]


@dataclass(frozen=True)
class Precision:
    """The choice for one process and what it rests on."""

    setting: str  # what was asked: auto, true or false
    bf16: bool  # gradient-free CPU passes under bf16 autocast
    reason: str
    float32_ms: float | None = None  # one pass over the timed products, median of REPEATS
    bf16_ms: float | None = None
    speedup: float | None = None  # median over rounds of float32 / bf16 within a round
    cpu: dict = field(default_factory=dict)
    model_dtype: str = ""  # the frozen weights' dtype (model.dtype), set when the model loads

    def to_json(self) -> dict:
        return {**asdict(self), "min_speedup": MIN_SPEEDUP}


def parse_setting(value: str | bool) -> str:
    """`auto`, `true` or `false` (YAML booleans and CLI strings alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in SETTINGS:
        raise ValueError(f"cpu_bf16_inference must be one of {list(SETTINGS)}, not {value!r}")
    return text


def cpu_identity() -> dict:
    """The CPU a figure was measured on: model name, the SIMD level PyTorch dispatches to, its bf16
    matrix units (from /proc/cpuinfo's flags, where there is one) and torch's thread count."""
    name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {"model": name, "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_units": [f for f in BF16_FLAGS if f in flags], "threads": torch.get_num_threads()}


def describe_cpu() -> str:
    """One line for benches and logs."""
    cpu = cpu_identity()
    units = ", ".join(cpu["bf16_units"]) or "none"
    return (f"CPU: {cpu['model']} (torch capability {cpu['capability']}, bf16 units: {units}, "
            f"{cpu['threads']} threads)")


def layer_shapes(config) -> list[tuple[int, int]]:
    """(out, in) of one decoder layer's projections: q, k, v, o, gate, up, down (Llama-style names;
    4x hidden MLP and no grouping where the config does not say)."""
    hidden = int(config.hidden_size)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads) * head_dim
    inner = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    shapes = [(heads * head_dim, hidden), (kv, hidden), (kv, hidden), (hidden, heads * head_dim),
              (inner, hidden), (inner, hidden), (hidden, inner)]
    return [(min(o, MAX_TIMED_DIM), min(i, MAX_TIMED_DIM)) for o, i in shapes]


def time_products(rows: int, shapes: Sequence[tuple[int, int]]) -> Callable[[bool], float]:
    """A timer of one pass of `F.linear` over `shapes` with float32 inputs and weights, under bf16
    autocast or not (its argument), as the model runs: autocast converts frozen weights in every
    pass (it caches only weights that need gradients), so the conversion is part of the cost."""
    generator = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(rows, i, generator=generator), torch.randn(o, i, generator=generator))
             for o, i in shapes]

    def one_pass(bf16: bool) -> float:
        started = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for x, w in pairs:
                F.linear(x, w)
        return (time.perf_counter() - started) * 1e3

    return one_pass


def choose(setting: str | bool, device: torch.device | str, config, timer: Timer | None = None
           ) -> Precision:
    """Decide whether gradient-free passes on this CPU run under bf16 autocast (`timer`: how the
    products are timed, `time_products` unless given). After a warm-up each way, REPEATS rounds
    of one float32 and one bf16 pass; the speed-up is the median of the rounds' ratios."""
    setting = parse_setting(setting)
    device = torch.device(device)
    cpu = cpu_identity() if device.type == "cpu" else {}
    if device.type != "cpu":
        return Precision(setting, False, f"device {device.type}: the CPU setting does not apply")
    if setting != "auto":
        return Precision(setting, setting == "true", f"forced by cpu_bf16_inference: {setting}",
                         cpu=cpu)
    one_pass = (timer or time_products)(ROWS, layer_shapes(config))
    one_pass(False)  # warm-up (oneDNN builds its bf16 kernels on first use)
    one_pass(True)
    rounds = [(one_pass(False), one_pass(True)) for _ in range(REPEATS)]
    speedup = statistics.median(a / b for a, b in rounds)
    float32_ms = statistics.median(a for a, _ in rounds)
    bf16_ms = statistics.median(b for _, b in rounds)
    bf16 = speedup >= MIN_SPEEDUP
    verdict = "faster" if bf16 else "not clearly faster"
    reason = (f"measured: bf16 autocast {verdict} than float32 on this CPU ({speedup:.2f}x; "
              f"{bf16_ms:.1f} vs {float32_ms:.1f} ms for one layer's products at {ROWS} rows; "
              f"bf16 needs >= {MIN_SPEEDUP}x)")
    return Precision(setting, bf16, reason, float32_ms, bf16_ms, speedup, cpu)
