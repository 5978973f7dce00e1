"""Pre-flight checks before a long run: `python -m tagllm preflight --configfile presets/paper.yaml`.

Each check is a small function returning a `Check`, printed as one line: `ok`, `missing` (not there
yet; the line names the command that makes it) or `failed` (there but wrong; the line says what to
do). In order: the config (config.yaml, then each overlay, merged as Snakemake merges them) passes
`config_check.config_problems`; every download its datasets need is present and passes the checks
the download rule makes (size, SHA-256 against the pin or the file's `.source.json` record); the
model folder `results/models/<model.name>` has a config, a source record that matches the config
and complete safetensors files (headers and sizes read, tensors loaded only with `--load-weights`);
its tokenizer gives SMILES and protein strings one token per character on the prompt encoder's
character path; a GPU is visible and computes in bf16 (needed only when the config's device is
cuda); and the run's GPU hours, estimated from the prepared data present (`tagllm/gpu_hours.py`).
Nothing is downloaded or written. Imports here are light: torch, transformers and the data modules
load inside the checks that need them.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tagllm.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# What the tokenizer check encodes: the characters of canonical SMILES (organic and bracket atoms,
# aromatic atoms, charges, isotopes, bonds, ring closures incl. %nn, stereo, branches, dots) and the
# 20 standard amino acids.
SMILES_SAMPLES = ("CC(=O)Oc1ccccc1C(=O)O", "C[C@@H](N)C(=O)O", "Clc1ccc(Br)cc1/C=C\\C#N",
                  "[Na+].[O-]S(=O)(=O)c1ccc(I)cc1F", "C%10CCCCC%10", "[2H]c1c[nH]c(-c2ccoc2)n1",
                  "O=P(O)(O)O[Se][Si](C)(C)B[Mg][Zn][Li][K]")
PROTEIN_SAMPLE = "ACDEFGHIKLMNPQRSTVWY"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class Check:
    """One line of the pre-flight report."""

    name: str
    ok: bool
    detail: str
    missing: bool = False  # not there yet (rather than there but wrong)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "missing" if self.missing else "failed"

    def line(self) -> str:
        return f"{self.status:<7} {self.name}: {' '.join(self.detail.splitlines())}"


# ------------------------------------------------------------------------------------------- config
def load_config(configfiles: Sequence[str | Path], directory: str | Path = ".") -> dict:
    """`<directory>/config.yaml` (the Snakefile's `configfile:`), then each overlay in order,
    merged as Snakemake merges `--configfile`s."""
    from snakemake.utils import update_config

    config: dict = {}
    for path in [Path(directory) / "config.yaml", *map(Path, configfiles)]:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, Mapping):
            raise UserError(f"{path}: not a mapping of config keys")
        update_config(config, loaded or {})
    return config


def check_config(config: Mapping, names: Sequence[str]) -> list[Check]:
    """The checks the Snakefile makes before it builds the DAG: one line per problem."""
    from tagllm.config_check import config_problems

    problems = config_problems(config, SCHEMA)
    if problems:  # "config stage2.qed: ..." -> "failed  config: stage2.qed: ..."
        return [Check("config", False, problem.removeprefix("config").removeprefix(":").strip())
                for problem in problems]
    return [Check("config", True, f"{' + '.join(names)}: schema and cross-references pass")]


def active(config: Mapping) -> dict:
    """The config as the workflow reads it: datasets, stage-1 tags and runs set to null are off."""
    from tagllm.plan import switched_on

    return switched_on(config)


# ---------------------------------------------------------------------------------------- downloads
def required_sources(config: Mapping) -> list[str]:
    """Download sources the config's datasets are prepared from, in the order they first appear."""
    from tagllm.data.kinds import required_downloads

    sources: list[str] = []
    for entry in (config.get("data") or {}).values():
        for source in required_downloads(str(entry["kind"]), str(entry["source"]),
                                         str(entry.get("lang", ""))):
            if source not in sources:
                sources.append(source)
    return sources


def check_download(source: str, directory: str | Path = ".") -> Check:
    """`resources/downloads/<source>/` holds what the prepare step reads, and each file the download
    fetched passes its size and SHA-256 checks (nothing is fetched)."""
    from tagllm.data.download import DownloadError, verify_present
    from tagllm.data.sources import fetched_files, source_files

    name = f"download {source}"
    folder = Path(directory) / "resources" / "downloads" / source
    fetch = (f"`python -m tagllm download --source {source} --out-dir {folder}` where there is "
             "network (or the download_source rule on a login node)")
    wanted = source_files(source)
    absent = [file for file in wanted if not (folder / file).is_file()]
    if absent:
        what = f"{folder}/ not found" if not folder.is_dir() else \
            f"{', '.join(absent)} not in {folder}/"
        return Check(name, False, f"{what}; run {fetch}", missing=True)
    checked = []
    for path, min_bytes, pinned in fetched_files(source, folder):
        if not path.is_file():  # only its extracted or converted files are kept
            continue
        try:
            checked.append(verify_present(path, min_bytes, pinned))
        except (DownloadError, OSError, ValueError) as error:  # ValueError: an unreadable record
            return Check(name, False, f"{error}; delete {path} and run {fetch}")
    size = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    how = ", ".join(sorted(set(checked))) or "no fetched file kept to check"
    return Check(name, True, f"{folder}/ ({_size(size)}): {len(wanted)} file(s) present; {how}")


def _count(n: float) -> str:
    return f"{n / 1e9:.2f} billion" if n >= 1e9 else f"{n / 1e6:.1f} million" if n >= 1e6 \
        else f"{n:,.0f}"


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return ""


# -------------------------------------------------------------------------------------------- model
def safetensors_header(path: Path) -> dict:
    """The tensors a safetensors file describes (name -> dtype, shape, offsets), checked against
    the file's size; no tensor is read. ValueError for a torn or foreign file."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length < 100_000_000:
            raise ValueError(f"{path}: not a safetensors file")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: unreadable safetensors header ({error})") from None
    header.pop("__metadata__", None)
    end = 0
    for tensor, info in header.items():
        begin, stop = info["data_offsets"]
        width = _DTYPE_BYTES.get(info["dtype"])
        if width and stop - begin != math.prod(info["shape"]) * width:
            raise ValueError(f"{path}: tensor {tensor} holds {stop - begin} bytes, not those of "
                             f"shape {info['shape']} in {info['dtype']}")
        end = max(end, stop)
    size, described = path.stat().st_size, 8 + length + end
    if size < described:
        raise ValueError(f"{path}: {size:,} bytes, but its header describes {described:,} "
                         "(truncated?)")
    return header


def weight_tensors(folder: Path) -> tuple[list[str], dict]:
    """The safetensors files of a model folder (from its index, if sharded) and every tensor's
    header entry. ValueError if a file is missing, torn, or a tensor of the index is in none."""
    index = folder / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"] if index.is_file() else {}
    files = sorted(set(weight_map.values())) or sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no safetensors weights (model.safetensors or an index)")
    absent = [file for file in files if not (folder / file).is_file()]
    if absent:
        raise ValueError(f"{folder}: weight file(s) {', '.join(absent)} of the index are missing")
    tensors: dict = {}
    for file in files:
        tensors.update(safetensors_header(folder / file))
    lost = [tensor for tensor in weight_map if tensor not in tensors]
    if lost:
        raise ValueError(f"{folder}: {len(lost)} tensor(s) of the index are in no file "
                         f"(first: {lost[0]})")
    return files, tensors


def model_folder(config: Mapping, directory: str | Path = ".") -> Path:
    return Path(directory) / "results" / "models" / str(config["model"]["name"])


def _make_model(config: Mapping, snakemake: str) -> str:
    model = config["model"]
    where = f" on a login node (it downloads {model.get('hub_id')} from the hub)" \
        if model.get("source") == "hub" else ""
    return f"make it with `{snakemake} --until prepare_model --cores 1`{where}"


def check_model(config: Mapping, folder: Path, snakemake: str = "snakemake") -> Check:
    """The model folder's config loads, it was made from the source the config names, and its
    safetensors files are complete (headers and sizes; tensors not loaded)."""
    make = _make_model(config, snakemake)
    if not folder.is_dir():
        return Check("model", False, f"{folder} not found; {make}", missing=True)
    if not (folder / "config.json").is_file():
        return Check("model", False, f"{folder}: not a model folder (no config.json); delete it "
                                     f"and {make}")
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(str(folder))
        files, tensors = weight_tensors(folder)
    except (OSError, ValueError, KeyError) as error:
        return Check("model", False, f"{' '.join(str(error).split())}; delete {folder} and {make}")
    wanted = config["model"]
    record_path = folder / "tagllm_source.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    made_from = record.get("source")
    if made_from and (made_from != wanted.get("source") or
                      (made_from == "hub" and record.get("model_id") != wanted.get("hub_id"))):
        return Check("model", False, f"{folder} was made from {made_from} "
                                     f"{record.get('model_id', '')}, but the config asks for "
                                     f"{wanted.get('source')} {wanted.get('hub_id') or ''}; "
                                     f"delete it and {make} (or give model.name a new folder)")
    embedding = next((info["shape"] for tensor, info in tensors.items()
                      if tensor.endswith("embed_tokens.weight")), None)
    hidden = getattr(model_config, "hidden_size", None)
    if embedding and hidden and embedding[1] != hidden:
        return Check("model", False, f"{folder}: embedding of width {embedding[1]}, but config.json "
                                     f"says hidden_size {hidden}; delete it and {make}")
    n_params = sum(math.prod(info["shape"]) for info in tensors.values())
    arch = ", ".join(getattr(model_config, "architectures", None) or [model_config.model_type])
    return Check("model", True, f"{folder}: {arch}, hidden size {hidden}, "
                                f"{getattr(model_config, 'num_hidden_layers', '?')} layers; "
                                f"{_count(n_params)} parameters in {len(files)} safetensors file(s), "
                                "headers and sizes complete (tensors not loaded; --load-weights loads them)")


def check_weights_load(config: Mapping, folder: Path) -> Check:
    """Load the weights as the jobs do (dtype of the config; on its GPU when one is visible)."""
    import torch

    from tagllm.model import load_frozen_model

    dtype = str(config["model"].get("dtype", "float32"))
    device = str(config.get("device", "cpu"))
    device = device if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    if not folder.is_dir():
        return Check("weights", False, f"{folder} not found (see the model line)", missing=True)
    start = time.perf_counter()
    try:
        model, _ = load_frozen_model(folder, dtype, device)
    except (OSError, ValueError, RuntimeError) as error:
        return Check("weights", False, f"{folder}: {' '.join(str(error).split())}")
    n_params = sum(p.numel() for p in model.parameters())
    del model
    return Check("weights", True, f"{_count(n_params)} parameters loaded as {dtype} on {device} in "
                                  f"{time.perf_counter() - start:.0f} s")


def check_tokenizer(config: Mapping, folder: Path) -> Check:
    """SMILES and protein strings go in one token per character on the prompt encoder's character
    path (as `Base.encoder` builds it), each token the character itself."""
    if not config.get("char_level", True):
        return Check("tokenizer", True, "char_level is false: SMILES and proteins go in as the "
                                        "tokenizer's subwords (not the paper's character path)")
    if not (folder / "config.json").is_file():
        return Check("tokenizer", False, f"not checked: no model folder at {folder} (see the model "
                                         "line)", missing=True)
    from transformers import AutoTokenizer

    from tagllm.prompts import PromptEncoder, byte_level_char

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as error:
        return Check("tokenizer", False, f"{folder}: cannot load the tokenizer "
                                         f"({' '.join(str(error).split())})")
    encoder = PromptEncoder(tokenizer, {}, {}, frozenset({"text"}), add_bos=False,
                            char_level=True, eos_id=tokenizer.eos_token_id)
    split: dict[str, list[str]] = {}
    for char in sorted(set("".join(SMILES_SAMPLES)) | set(PROTEIN_SAMPLE)):
        ids = list(encoder.encode("{text}", {"text": char}).ids)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        own = {char, byte_level_char(char), f"<0x{ord(char):02X}>"}
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id or pieces[0] not in own:
            split[char] = pieces
    if split:
        shown = ", ".join(f"{char!r} -> {pieces}" for char, pieces in list(split.items())[:6])
        return Check("tokenizer", False, f"{type(tokenizer).__name__}: {len(split)} character(s) "
                                         f"of SMILES or proteins are not one token each ({shown}); "
                                         "the character path needs one vocabulary entry per "
                                         "character (char_level: false uses subwords instead)")
    n_smiles = len(set("".join(SMILES_SAMPLES)))
    return Check("tokenizer", True, f"{type(tokenizer).__name__}: one token per character for "
                                    f"{n_smiles} SMILES characters and the 20 amino acids")


# ---------------------------------------------------------------------------------------------- GPU
def bf16_matmul_error(device: str) -> float:
    """Largest relative error of a bf16 matrix product against float32 on `device`."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=generator).to(device)
    exact = a @ a
    half = (a.bfloat16() @ a.bfloat16()).float()
    torch.cuda.synchronize(device)
    return float((half - exact).abs().max() / exact.abs().max())


def check_gpu(config: Mapping) -> Check:
    """A CUDA device is visible and multiplies in bf16; a failure only if the config asks for cuda."""
    import torch

    device = str(config.get("device", "cpu"))
    needed = device.startswith("cuda")
    if not torch.cuda.is_available():
        if needed:
            build = f"torch {torch.__version__} is a CPU-only build: install the CUDA one" \
                if torch.version.cuda is None else \
                f"check `nvidia-smi` there (torch {torch.__version__}, CUDA {torch.version.cuda})"
            return Check("gpu", False, f"no GPU visible, but the config's device is {device}: run "
                                       "this on a GPU node (`srun --gpus=1 python -m tagllm "
                                       f"preflight ...`); {build}")
        return Check("gpu", True, f"no GPU visible; the config's device is {device}, so none is "
                                  "needed")
    count = torch.cuda.device_count()
    index = (torch.device(device).index or 0) if needed else 0
    if index >= count:
        return Check("gpu", False, f"the config's device is {device}, but {count} GPU(s) are "
                                   "visible (CUDA_VISIBLE_DEVICES?)")
    name = torch.cuda.get_device_name(index)
    capability = torch.cuda.get_device_capability(index)
    memory = torch.cuda.get_device_properties(index).total_memory / 2**30
    seen = f"{count} GPU(s) visible, cuda:{index} {name} ({memory:.0f} GiB, compute capability " \
           f"{capability[0]}.{capability[1]})"
    try:
        error = bf16_matmul_error(f"cuda:{index}")
    except RuntimeError as failure:
        return Check("gpu", False, f"{seen}; a bf16 matrix product failed: "
                                   f"{' '.join(str(failure).split())}")
    dtype = str(config["model"].get("dtype", ""))
    if error > 0.05:
        return Check("gpu", False, f"{seen}; a bf16 product is off by {error:.1e} (relative): "
                                   "check the driver and torch's CUDA build")
    if capability < (8, 0) and dtype == "bfloat16":
        return Check("gpu", False, f"{seen}; bf16 is only emulated before compute capability 8.0 "
                                   "(A100, H100): set model.dtype: float16 (the paper's) for "
                                   "this GPU")
    return Check("gpu", True, f"{seen}; bf16 matrix product within {error:.1e} of float32")


def check_gpu_hours(config: Mapping, directory: str | Path = ".", folder: Path | None = None,
                    measured_json: str | Path | None = None) -> Check:
    """The GPU hours of the paper preset's job list, with the row counts and lengths of the
    prepared data present (`gpu_figures.data_figures`) and the config's epochs and tag length."""
    if str(config.get("device", "cpu")) == "cpu":
        return Check("gpu hours", True, "not estimated: the config's device is cpu (the estimate "
                                        "models the paper preset's GPU jobs)")
    from tagllm.gpu_figures import data_figures
    from tagllm.gpu_hours import N_PARAMS, compute

    data = data_figures(config, directory)
    if measured_json:
        report = compute(measured_json=str(measured_json), preset=config, data=data)
        hours = f"~{report['total_gpu_hours']:,.0f} GPU hours at the tokens/s measured in " \
                f"{measured_json}"
    else:
        a100 = compute(312.0, 0.4, preset=config, data=data)["total_gpu_hours"]
        h100 = compute(989.0, 0.4, preset=config, data=data)["total_gpu_hours"]
        hours = f"~{a100:,.0f} A100 hours, ~{h100:,.0f} H100/H200 hours (bf16 peak x 40% MFU, " \
                "modelled)"
    tasks = sorted(key.removeprefix("train_rows_") for key in data if key.startswith("train_rows_"))
    sizes = f"row counts of {', '.join(tasks)} from results/data, the other sizes assumed" if tasks \
        else "no prepared data yet: every size assumed"
    note = ""
    if folder is not None:
        try:
            n_params = sum(math.prod(info["shape"]) for info in weight_tensors(folder)[1].values())
        except (OSError, ValueError, KeyError):
            n_params = 0
        if n_params and abs(n_params / N_PARAMS - 1) > 0.05:
            note = f"; the cost model assumes LLaMA-7B's {_count(N_PARAMS)} parameters, this " \
                   f"model has {_count(n_params)}"
    return Check("gpu hours", True, f"{hours}; {sizes} (`python bench/gpu_hours.py --list`){note}")


# ------------------------------------------------------------------------------------------- runner
def preflight(configfiles: Sequence[str | Path] = (), directory: str | Path = ".",
              load_weights: bool = False, measured_json: str | Path | None = None
              ) -> Iterator[Check]:
    """Every check, in order, as it completes (the config first: the others read it)."""
    names = ["config.yaml", *map(str, configfiles)]
    try:
        config = load_config(configfiles, directory)
    except (OSError, yaml.YAMLError, UserError) as error:
        yield Check("config", False, " ".join(str(error).split()))
        return
    checks = check_config(config, names)
    yield from checks
    if not all(check.ok for check in checks):
        return
    config = active(config)
    snakemake = "snakemake"  # the command the lines name, with the same config files
    if configfiles:
        snakemake += " --configfile " + " ".join(shlex.quote(str(f)) for f in configfiles)
    if str(directory) != ".":
        snakemake += f" --directory {shlex.quote(str(directory))}"
    sources = _guarded("downloads", required_sources, config)
    if isinstance(sources, Check):
        yield sources
        sources = []
    elif not sources:
        yield Check("downloads", True, "none needed (every dataset is embedded or built from others)")
    for source in sources:
        yield _guarded(f"download {source}", check_download, source, directory)
    folder = model_folder(config, directory)
    yield _guarded("model", check_model, config, folder, snakemake)
    if load_weights:
        yield _guarded("weights", check_weights_load, config, folder)
    yield _guarded("tokenizer", check_tokenizer, config, folder)
    yield _guarded("gpu", check_gpu, config)
    yield _guarded("gpu hours", check_gpu_hours, config, directory, folder, measured_json)


def _guarded(name: str, check, *args):
    """Run one check; an unexpected error becomes its failed line, so the others still run."""
    try:
        return check(*args)
    except Exception as error:  # a bug or a file no check foresaw: one line, not a traceback
        return Check(name, False, f"the check itself failed ({type(error).__name__}: "
                                  f"{' '.join(str(error).split())})")


def print_preflight(configfiles: Sequence[str | Path] = (), directory: str | Path = ".",
                    load_weights: bool = False, measured_json: str | Path | None = None) -> None:
    """Print one line per check; a UserError (exit code 2 from the CLI) if any did not pass."""
    checks = []
    for check in preflight(configfiles, directory, load_weights, measured_json):
        print(check.line(), flush=True)
        checks.append(check)
    failed = [check for check in checks if not check.ok]
    if failed:
        raise UserError(f"{len(failed)} of {len(checks)} checks did not pass (the lines marked "
                        "missing or failed say what to do)")
