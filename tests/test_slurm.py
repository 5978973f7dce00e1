"""profiles/slurm with the real snakemake-executor-plugin-slurm, against stand-in SLURM commands.

The stand-ins (sbatch, srun, sacct, squeue, sinfo, scontrol, scancel, sacctmgr, sshare) are one
Python script written into a temporary bin/ put first on PATH. sbatch records its argv and job script,
runs the job to completion (so every status query sees a final state) and prints the job id the way
`--parsable` does; sacct/squeue report COMPLETED or FAILED from the job's exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import available_cpu_count

from tests.workflow_copy import TINY, copy_workflow

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("sbatch", "srun", "sacct", "squeue", "sinfo", "scontrol", "scancel", "sacctmgr", "sshare")

FAKE_SLURM = r'''
"""Stand-in SLURM command, dispatched on the name it is called by; state lives in $FAKE_SLURM_DIR."""
import json, os, subprocess, sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])
JOBS = STATE / "jobs"
# sbatch options the plugin passes with their value as the next argument.
SEPARATE_VALUE = {"--job-name", "--output", "--comment", "-A", "-p", "-t", "--mem", "--mem-per-cpu",
                  "-D", "--clusters", "-C"}


def record(tool, **extra):
    with open(STATE / "calls.jsonl", "a") as log:
        log.write(json.dumps({"tool": tool, "argv": sys.argv[1:], **extra}) + "\n")


def option(args, name):
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def new_job_id():
    JOBS.mkdir(exist_ok=True)
    job_id = 1000
    while True:
        try:
            os.close(os.open(JOBS / f"{job_id}.id", os.O_CREAT | os.O_EXCL))
            return str(job_id)
        except FileExistsError:
            job_id += 1


def sbatch(args):
    wrap, positional, i = option(args, "--wrap"), [], 0
    while i < len(args):
        if args[i] in SEPARATE_VALUE:
            i += 1
        elif not args[i].startswith("-"):
            positional.append(args[i])
        i += 1
    if wrap is not None:
        script = "#!/bin/sh\n" + wrap + "\n"
    else:
        script = sys.stdin.read() if positional[0] == "/dev/stdin" else Path(positional[0]).read_text()
    job_id = new_job_id()
    record("sbatch", script=script, job_id=job_id)
    (JOBS / f"{job_id}.name").write_text(option(args, "--job-name") or "")
    env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id}
    if option(args, "--gpus"):
        env["SLURM_GPUS"] = option(args, "--gpus")
    log_path = Path((option(args, "--output") or "slurm-%j.out").replace("%j", job_id))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        code = subprocess.run(["/bin/sh", "-c", script], cwd=option(args, "-D"), env=env,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT).returncode
    (JOBS / f"{job_id}.state").write_text("COMPLETED" if code == 0 else "FAILED")
    print(job_id)


def states(args):
    name = option(args, "--name")
    for state in sorted(JOBS.glob("*.state")):
        job_id = state.name.split(".")[0]
        if name is None or (JOBS / f"{job_id}.name").read_text() == name:
            print(f"{job_id}|{state.read_text()}")


def srun(args):
    record("srun")
    command = args[next(i for i, arg in enumerate(args) if not arg.startswith("-")):]
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    gpus = option(args, "--gpus")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(int(gpus)))
    os.execvpe(command[0], command, env)


def main():
    tool, args = Path(sys.argv[0]).name, sys.argv[1:]
    if tool == "sbatch":
        return sbatch(args)
    if tool == "srun":
        return srun(args)
    record(tool)
    if (tool == "sacct" and "--format=JobIdRaw,State" in args) or tool == "squeue":
        states(args)
    elif tool == "sinfo":
        print("PARTITION\nmain*")
    elif tool == "scontrol":
        print("MaxArraySize = 1001\nMinJobAge = 300 sec")
    elif tool in ("sacctmgr", "sshare"):
        print("\n".join(os.environ.get("FAKE_SLURM_ACCOUNTS", "").split(",")))
    elif tool == "scancel":
        for job_id in args:
            if job_id.isdigit():
                (JOBS / f"{job_id}.state").write_text("CANCELLED")


main()
'''

SNAKEFILE = """
localrules: all


rule all:
    input:
        "data.txt",
        "gpu.txt",


rule prepare_dataset:
    output:
        "data.txt",
    threads: 2
    shell:
        "echo data > {{output}}"


rule train_domain_tag:
    output:
        "gpu.txt",
    resources:
        gpu=2,
        mem_mb=12345,
        runtime=90,
    shell:
        "{python} -m tagllm.gpu_slots --gpus {{resources.gpu}} --timeout 5 --"
        " {python} -c 'import os, sys; print(os.environ[\\"CUDA_VISIBLE_DEVICES\\"], file=sys.stdout)'"
        " > {{output}}"
"""


def install_fake_slurm(bin_dir: Path) -> None:
    bin_dir.mkdir()
    script = bin_dir / "fake_slurm.py"
    script.write_text(f"#!{sys.executable}\n{FAKE_SLURM}")
    script.chmod(0o755)
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(script)


def fake_slurm_env(bin_dir: Path, state: Path, account: str) -> dict[str, str]:
    """This environment without SLURM's, Snakemake's and tagllm's variables, with the stand-in
    commands (installed into `bin_dir`) first on PATH and their state in `state`."""
    install_fake_slurm(bin_dir)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "SBATCH_", "SRUN_", "TAGLLM_", "SNAKEMAKE_"))
           and key != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env["PATH"]]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               FAKE_SLURM_DIR=str(state), FAKE_SLURM_ACCOUNTS=str(account))
    return env


def calls(state: Path, tool: str) -> list[dict]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [call for call in map(json.loads, lines) if call["tool"] == tool]


def sbatch_for(state: Path, rule: str) -> list[str]:
    """The sbatch arguments of a rule's one job (its comment: rule_<rule>[_wildcards_...])."""
    matches = [call["argv"] for call in calls(state, "sbatch")
               if any(arg == f"rule_{rule}" or arg.startswith(f"rule_{rule}_wildcards_")
                      for arg in call["argv"])]
    assert len(matches) == 1, calls(state, "sbatch")
    return matches[0]


def test_every_profile_setting_is_commented():
    lines = (ROOT / "profiles" / "slurm" / "config.yaml").read_text().splitlines()
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.strip() and not line.lstrip().startswith("#"):
            assert previous.lstrip().startswith("#"), f"no comment above: {line}"


def test_slurm_profile_submits_gpu_and_cpu_jobs(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="snakemake-executor-plugin-slurm is not installed (pip install '.[dev]')")
    profile = tmp_path / "profile"
    shutil.copytree(ROOT / "profiles" / "slurm", profile)
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    defaults, gpu_rule = settings["default-resources"], settings["set-resources"]["train_domain_tag"]
    workdir, state = tmp_path / "work", tmp_path / "slurm"
    # As in the checkout, Snakemake also applies the workflow profile profiles/default on top.
    shutil.copytree(ROOT / "profiles" / "default", workdir / "profiles" / "default")
    state.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE.format(python=sys.executable))
    env = fake_slurm_env(tmp_path / "bin", state, defaults["slurm_account"])

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--executor", "slurm", "--profile", str(profile),
         "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300)

    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert (workdir / "data.txt").read_text() == "data\n"
    # srun exposed the job's two GPUs; gpu_slots saw SLURM_JOB_ID and left them alone.
    assert (workdir / "gpu.txt").read_text().strip() == "0,1"

    gpu_args = sbatch_for(state, "train_domain_tag")
    assert "--gpus=2" in gpu_args
    assert gpu_args[gpu_args.index("--mem") + 1] == "12345"
    assert gpu_args[gpu_args.index("-t") + 1] == "90"
    assert gpu_args[gpu_args.index("-p") + 1] == gpu_rule["slurm_partition"]
    assert gpu_args[gpu_args.index("-A") + 1] == defaults["slurm_account"]
    assert f"--cpus-per-task={gpu_rule['cpus_per_task']}" in gpu_args
    assert not any(arg.startswith(("--ntasks", "--gres")) for arg in gpu_args), gpu_args

    cpu_args = sbatch_for(state, "prepare_dataset")
    assert not any(arg.startswith(("--gpus", "--gres", "--ntasks-per-gpu")) for arg in cpu_args)
    assert cpu_args[cpu_args.index("--mem") + 1] == str(defaults["mem_mb"])
    assert cpu_args[cpu_args.index("-t") + 1] == str(defaults["runtime"])
    assert cpu_args[cpu_args.index("-p") + 1] == defaults["slurm_partition"]
    # cpus_per_task is the rule's threads, which profiles/default's `cores: all` caps to this machine.
    assert f"--cpus-per-task={min(2, available_cpu_count())}" in cpu_args and "--ntasks=1" in cpu_args

    # Inside the GPU job: one srun step with all the job's GPUs (torchrun then starts one process each).
    steps = [call["argv"] for call in calls(state, "srun")]
    assert len(steps) == 2
    gpu_step = next(step for step in steps if "--gpus=2" in step)
    assert "-n1" in gpu_step


@pytest.mark.slow
def test_workflow_rules_run_under_the_slurm_profile_with_its_resources(tmp_path):
    """The real rules (model, data, stage 1, Tag-LLM's seeds of tiny.yaml's qed) submitted by
    profiles/slurm to the stand-in sbatch: each job asks for the profile's partition, GPUs and
    CPUs, and runs the rule to its files."""
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="snakemake-executor-plugin-slurm is not installed (pip install '.[dev]')")
    workdir, state = tmp_path / "work", tmp_path / "slurm"
    copy_workflow(workdir, *TINY)
    (workdir / "gpu.yaml").write_text("resources: {gpu: 1, eval_gpu: 1}\n")
    settings = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    defaults, gpu_rule = settings["default-resources"], settings["set-resources"]["train_domain_tag"]
    state.mkdir()
    env = {**fake_slurm_env(tmp_path / "bin", state, defaults["slurm_account"]),
           "HF_HUB_OFFLINE": "1"}
    target = "results/runs/tagllm/qed/seed0/metrics.json"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile",
         "tests/data/tiny.yaml", "gpu.yaml", "--slurm-init-seconds-before-status-checks", "1",
         "--latency-wait", "5", target],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert json.loads((workdir / target).read_text())["steps"] > 0
    for rule in ("train_domain_tag", "train_tagllm_seeds"):
        args = sbatch_for(state, rule)
        assert "--gpus=1" in args and args[args.index("-p") + 1] == gpu_rule["slurm_partition"]
        assert f"--cpus-per-task={gpu_rule['cpus_per_task']}" in args, args
        assert args[args.index("-A") + 1] == defaults["slurm_account"]
    for rule in ("prepare_model", "prepare_dataset"):
        args = sbatch_for(state, rule)
        assert not any(arg.startswith("--gpus") for arg in args)
        assert args[args.index("-p") + 1] == defaults["slurm_partition"]
    # The job's launcher: gpu_slots sees SLURM_JOB_ID and leaves the job's GPU to SLURM.
    assert "python -m tagllm.gpu_slots --gpus 1 -- python -m tagllm train-function-tag" in log
