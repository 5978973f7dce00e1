"""GPU device slots for several concurrent jobs on ONE machine with several GPUs.

Snakemake's `--resources gpu=4` caps how many GPUs the running jobs ask for in total, but it does not
say WHICH devices a job may use (it never sets CUDA_VISIBLE_DEVICES), so two concurrent jobs would
both land on device 0. Wrapping a job's command hands it distinct devices:

    python -m tagllm.gpu_slots --gpus 2 -- torchrun --standalone --nproc_per_node 2 ...

takes 2 free slots out of the machine's GPUs (blocking until they are free), sets
CUDA_VISIBLE_DEVICES to their ids, runs the command and forwards its exit code and SIGTERM/SIGINT.
A slot is one `fcntl.flock` on one file per device in a lock folder (`$TAGLLM_GPU_LOCK_DIR`, else
`.snakemake/gpu_slots`); the kernel drops a flock when the last process holding it dies, so a
killed job never leaks its slot. `--gpus 0` and SLURM jobs (SLURM_JOB_ID set: SLURM has already
assigned the devices) run the command unchanged.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class SlotError(RuntimeError):
    """A request that can never be met (more slots than devices) or that timed out."""


def default_total() -> int:
    """Devices on this machine: `$TAGLLM_GPUS`, else the GPUs `nvidia-smi -L` lists, else 0."""
    if os.environ.get("TAGLLM_GPUS"):
        return int(os.environ["TAGLLM_GPUS"])
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def default_lock_dir() -> Path:
    return Path(os.environ.get("TAGLLM_GPU_LOCK_DIR", ".snakemake/gpu_slots"))


def _try_lock(device: int, lock_dir: Path) -> int | None:
    """An open descriptor holding the device's exclusive flock, or None when another process holds it."""
    fd = os.open(lock_dir / f"gpu{device}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _try_acquire(count: int, total: int, lock_dir: Path) -> dict[int, int] | None:
    """All `count` slots at once (device id -> descriptor), or None; never keeps a partial set."""
    held: dict[int, int] = {}
    if count == 0:
        return held
    for device in range(total):
        fd = _try_lock(device, lock_dir)
        if fd is not None:
            held[device] = fd
            if len(held) == count:
                return held
    _release(held)
    return None


def _release(held: dict[int, int]) -> None:
    for fd in held.values():
        os.close(fd)


@contextmanager
def acquire_fds(count: int, total: int | None = None, lock_dir: Path | str | None = None,
                timeout: float | None = None, poll: float = 0.5) -> Iterator[dict[int, int]]:
    """Like `acquire`, yielding device id -> the descriptor that holds its lock."""
    total = default_total() if total is None else total
    if count < 0 or count > total:
        raise SlotError(f"asked for {count} GPU slot(s) but this machine has {total} "
                        "(set --total or TAGLLM_GPUS, or check `nvidia-smi -L`)")
    folder = default_lock_dir() if lock_dir is None else Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while (held := _try_acquire(count, total, folder)) is None:
        if deadline is not None and time.monotonic() >= deadline:
            raise SlotError(f"no {count} free GPU slot(s) of {total} in {folder} after {timeout} s")
        if not waited:
            print(f"gpu_slots: waiting for {count} free GPU slot(s) of {total} in {folder}",
                  file=sys.stderr, flush=True)
            waited = True
        time.sleep(poll)
    try:
        yield held
    finally:
        _release(held)


@contextmanager
def acquire(count: int, total: int | None = None, lock_dir: Path | str | None = None,
            timeout: float | None = None, poll: float = 0.5) -> Iterator[list[int]]:
    """Hold `count` distinct device ids out of `total` (default: `default_total()`) until the block
    ends, polling every `poll` seconds until enough are free; SlotError after `timeout` seconds."""
    with acquire_fds(count, total, lock_dir, timeout, poll) as held:
        yield sorted(held)


def run_child(command: Sequence[str], env: dict[str, str], pass_fds: Sequence[int] = ()) -> int:
    """Run `command`, forwarding SIGTERM/SIGINT to it; its exit code (128 + N when killed by signal N).
    The child inherits `pass_fds`, so the slots stay held while it lives even if this process dies."""
    child = subprocess.Popen(list(command), env=env, pass_fds=tuple(pass_fds))
    forward = {sig: signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
               for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, previous in forward.items():
            signal.signal(sig, previous)
    return 128 - code if code < 0 else code


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tagllm.gpu_slots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, required=True, help="devices this command needs (0: none)")
    parser.add_argument("--total", type=int, default=None,
                        help="devices on this machine (default: $TAGLLM_GPUS, else `nvidia-smi -L`)")
    parser.add_argument("--lock-dir", type=Path, default=None,
                        help="lock folder (default: $TAGLLM_GPU_LOCK_DIR, else .snakemake/gpu_slots)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        parser.error("no command given (put it after --)")
    if args.gpus < 0:
        parser.error("--gpus must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.gpus == 0 or "SLURM_JOB_ID" in os.environ:
        os.execvp(args.command[0], args.command)
    try:
        with acquire_fds(args.gpus, args.total, args.lock_dir, args.timeout) as held:
            devices = ",".join(map(str, sorted(held)))
            print(f"gpu_slots: CUDA_VISIBLE_DEVICES={devices}", file=sys.stderr, flush=True)
            # nvidia-smi numbers devices by PCI bus; make CUDA number them the same way.
            env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", **os.environ, "CUDA_VISIBLE_DEVICES": devices}
            return run_child(args.command, env, list(held.values()))
    except SlotError as error:
        print(f"gpu_slots: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
