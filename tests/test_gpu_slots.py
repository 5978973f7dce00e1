"""tagllm.gpu_slots without GPUs: disjoint slots, blocking, release on SIGKILL, and the CLI wrapper."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tagllm.gpu_slots import SlotError, acquire, default_total

ROOT = Path(__file__).resolve().parents[1]
PRINT_DEVICES = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))"


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "TAGLLM_", "CUDA_", "SNAKEMAKE_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


def wrapper(lock_dir: Path, *options: str, command: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "tagllm.gpu_slots", "--lock-dir", str(lock_dir), *options, "--",
            *command]


def run_wrapped(lock_dir: Path, *options: str, code: str = PRINT_DEVICES,
                **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wrapper(lock_dir, *options, command=(sys.executable, "-c", code)),
                          capture_output=True, text=True, timeout=30, env=clean_env(**env))


def assert_all_busy(lock_dir: Path, total: int) -> None:
    with pytest.raises(SlotError, match="no 1 free GPU slot"), \
            acquire(1, total=total, lock_dir=lock_dir, timeout=0.1, poll=0.02):
        pass


def test_concurrent_acquisitions_get_disjoint_ids(tmp_path):
    with acquire(2, total=4, lock_dir=tmp_path) as first, acquire(2, total=4, lock_dir=tmp_path) as second:
        assert len(first) == len(second) == 2
        assert set(first).isdisjoint(second)
        assert sorted(first + second) == [0, 1, 2, 3]
    with acquire(4, total=4, lock_dir=tmp_path, timeout=0) as everything:
        assert everything == [0, 1, 2, 3]


def test_a_third_request_blocks_until_a_slot_is_released(tmp_path):
    holders = contextlib.ExitStack()
    first = holders.enter_context(acquire(1, total=2, lock_dir=tmp_path))
    holders.enter_context(acquire(1, total=2, lock_dir=tmp_path))
    assert_all_busy(tmp_path, total=2)
    got: list[list[int]] = []

    def third() -> None:
        with acquire(1, total=2, lock_dir=tmp_path, timeout=10, poll=0.02) as ids:
            got.append(ids)

    waiter = threading.Thread(target=third)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive() and not got
    first_holder = holders.pop_all()
    first_holder.close()
    waiter.join(timeout=10)
    assert got == [first]


def test_sigkill_of_the_holder_frees_its_slot(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom tagllm.gpu_slots import acquire\n"
         f"with acquire(1, total=1, lock_dir={str(tmp_path)!r}) as ids:\n"
         "    print(ids, flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "[0]"
        assert_all_busy(tmp_path, total=1)
    finally:
        holder.kill()
        holder.wait()
    with acquire(1, total=1, lock_dir=tmp_path, timeout=5, poll=0.02) as ids:
        assert ids == [0]


def test_the_wrapped_command_keeps_the_slot_until_it_dies(tmp_path):
    # The child inherits the lock: killing only the wrapper leaves the slot with the running command.
    command = (sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)")
    proc = subprocess.Popen(wrapper(tmp_path, "--gpus", "1", "--total", "1", command=command),
                            stdout=subprocess.PIPE, text=True, env=clean_env(), start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.kill()
        proc.wait()
        assert_all_busy(tmp_path, total=1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    with acquire(1, total=1, lock_dir=tmp_path, timeout=5, poll=0.02) as ids:
        assert ids == [0]


def test_cli_sets_the_acquired_devices(tmp_path):
    with acquire(1, total=3, lock_dir=tmp_path):
        result = run_wrapped(tmp_path, "--gpus", "2", "--total", "3",
                             code=PRINT_DEVICES + "; print(os.environ['CUDA_DEVICE_ORDER'])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1,2", "PCI_BUS_ID"]


def test_zero_gpus_leaves_the_environment_alone(tmp_path):
    lock_dir = tmp_path / "locks"
    assert run_wrapped(lock_dir, "--gpus", "0", CUDA_VISIBLE_DEVICES="5").stdout.strip() == "5"
    assert run_wrapped(lock_dir, "--gpus", "0").stdout.strip() == "unset"
    assert not lock_dir.exists()


def test_under_slurm_nothing_is_locked(tmp_path):
    with acquire(1, total=1, lock_dir=tmp_path):
        result = run_wrapped(tmp_path, "--gpus", "1", "--total", "1", "--timeout", "0.2",
                             SLURM_JOB_ID="42", CUDA_VISIBLE_DEVICES="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


@pytest.mark.parametrize("gpus", ["0", "1"])
def test_exit_code_is_forwarded(tmp_path, gpus):
    assert run_wrapped(tmp_path, "--gpus", gpus, "--total", "1", code="raise SystemExit(7)").returncode == 7


def test_death_by_signal_is_reported_as_128_plus_signal(tmp_path):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert run_wrapped(tmp_path, "--gpus", "1", "--total", "1", code=code).returncode == 128 + 15


def test_sigterm_is_forwarded_to_the_command(tmp_path):
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: (print('got TERM', flush=True), sys.exit(5)))\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen(wrapper(tmp_path, "--gpus", "1", "--total", "1",
                                    command=(sys.executable, "-c", code)),
                            stdout=subprocess.PIPE, text=True, env=clean_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 5
    assert out.strip() == "got TERM"


def test_more_slots_than_devices_fails_clearly(tmp_path):
    with pytest.raises(SlotError, match=r"asked for 3 GPU slot\(s\) but this machine has 2"), \
            acquire(3, total=2, lock_dir=tmp_path):
        pass
    result = run_wrapped(tmp_path, "--gpus", "3", "--total", "2")
    assert result.returncode == 2
    assert "gpu_slots: error: asked for 3 GPU slot(s) but this machine has 2" in result.stderr
    assert result.stdout == ""


def test_default_total_from_env_then_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGLLM_GPUS", "3")
    assert default_total() == 3
    monkeypatch.delenv("TAGLLM_GPUS")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_total() == 0
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\n"
                    "echo '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-c)'\n")
    fake.chmod(0o755)
    assert default_total() == 2


BARRIER_SNAKEFILE = """
rule all:
    input:
        expand("out/{{name}}.txt", name=["a", "b"]),


rule gpu_job:
    output:
        "out/{{name}}.txt",
    resources:
        gpu=1,
    shell:
        "{python} -m tagllm.gpu_slots --gpus {{resources.gpu}} --timeout 20 -- {python} barrier.py {{output}}"
"""

# Each job waits until both hold their device, so the two jobs provably run at the same time.
BARRIER = """
import os, sys, time
from pathlib import Path
out = Path(sys.argv[1])
out.with_suffix(".started").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
deadline = time.monotonic() + 20
while len(list(out.parent.glob("*.started"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
out.write_text(os.environ["CUDA_VISIBLE_DEVICES"])
"""


def test_concurrent_snakemake_jobs_get_distinct_devices(tmp_path):
    (tmp_path / "Snakefile").write_text(BARRIER_SNAKEFILE.format(python=sys.executable))
    (tmp_path / "barrier.py").write_text(BARRIER)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=clean_env(TAGLLM_GPUS="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    devices = sorted((tmp_path / "out" / f"{name}.txt").read_text() for name in ("a", "b"))
    assert devices == ["0", "1"]
    assert sorted(path.name for path in (tmp_path / ".snakemake" / "gpu_slots").iterdir()) == \
        ["gpu0.lock", "gpu1.lock"]
