"""`python -m tagllm preflight`: one line per check, ok on the embedded default with a tiny model,
one clear line per missing piece on the paper preset without downloads, and each check's failures
(a corrupted download, torn weights, a folder made from another source, a tokenizer without single
characters, no GPU where the config asks for one)."""

from __future__ import annotations

import shutil
import string
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from snakemake.utils import update_config

from tagllm import preflight
from tagllm.cli import build_parser, main
from tagllm.data.download import fetch
from tagllm.data.sources import SOURCES

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PAPER = ROOT / "presets" / "paper.yaml"
STATUSES = ("ok", "missing", "failed")


@pytest.fixture()
def workdir(tmp_path) -> Path:
    """A fresh working directory: the repository's config.yaml and nothing else."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    return tmp_path


@pytest.fixture()
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def report(capsys) -> tuple[list[str], str]:
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


def paper_config() -> dict:
    return preflight.active(preflight.load_config([PAPER], ROOT))


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["preflight", "--help"])
    assert exit_info.value.code == 0


def test_overlays_merge_as_snakemake_merges_them():
    expected = yaml.safe_load((ROOT / "config.yaml").read_text())
    for overlay in (PAPER, ROOT / "presets" / "mistral.yaml"):
        update_config(expected, yaml.safe_load(overlay.read_text()))
    merged = preflight.load_config([PAPER, ROOT / "presets" / "mistral.yaml"], ROOT)
    assert merged == expected
    assert merged["data"]["dc_synthetic"] is None  # switched off, as the Snakefile sees it
    assert "dc_synthetic" not in preflight.active(merged)["data"]


def test_embedded_default_with_a_tiny_model_passes(workdir, tiny_model_dir, no_gpu, capsys):
    (workdir / "results" / "models").mkdir(parents=True)
    (workdir / "results" / "models" / "tiny_random").symlink_to(tiny_model_dir)
    code = main(["preflight", "--directory", str(workdir), "--configfile", str(DATA / "tiny.yaml"),
                 "--load-weights"])
    lines, err = report(capsys)
    assert code == 0, lines
    assert [line.split(":")[0].split(maxsplit=1) for line in lines] == [
        ["ok", "config"], ["ok", "downloads"], ["ok", "model"], ["ok", "weights"],
        ["ok", "tokenizer"], ["ok", "gpu"], ["ok", "gpu hours"]]
    assert "none needed" in lines[1]
    assert "LlamaForCausalLM" in lines[2] and "tensors not loaded" in lines[2]
    assert "one token per character" in lines[4]
    assert "no GPU visible" in lines[5]
    assert "error" not in err


def test_paper_preset_without_downloads_names_each_missing_piece(workdir, no_gpu, capsys):
    code = main(["preflight", "--directory", str(workdir), "--configfile", str(PAPER)])
    lines, err = report(capsys)
    assert code == 2
    assert all(line.split()[0] in STATUSES for line in lines)
    downloads = [line for line in lines if line.split()[1] == "download"]
    # Every source but TDC's raw datasets (the preset reads TDC's benchmark groups instead).
    raw_tdc = {"tdc_drugcomb", "tdc_bindingdb_patent"}
    assert sorted(line.split()[2].rstrip(":") for line in downloads) == sorted(set(SOURCES) - raw_tdc)
    for line in downloads:
        source = line.split()[2].rstrip(":")
        assert line.startswith("missing")
        assert f"`python -m tagllm download --source {source} --out-dir " in line
    by_name = {line.split(":")[0].split(maxsplit=1)[1]: line for line in lines
               if line.split()[1] != "download"}
    assert list(by_name) == ["config", "model", "tokenizer", "gpu", "gpu hours"]
    assert by_name["config"].startswith("ok")
    assert by_name["model"].startswith("missing") and "llama_7b not found" in by_name["model"]
    assert f"`snakemake --configfile {PAPER} --directory {workdir} --until prepare_model" \
        in by_name["model"]
    assert by_name["tokenizer"].startswith("missing")
    assert by_name["gpu"].startswith("failed") and "no GPU visible" in by_name["gpu"]
    assert by_name["gpu hours"].startswith("ok") and "A100 hours" in by_name["gpu hours"]
    assert "every size assumed" in by_name["gpu hours"]
    assert f"{len(lines) - 2} of {len(lines)} checks did not pass" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["config.yaml"]  # nothing fetched or written


def test_a_config_problem_stops_before_the_other_checks(workdir, tmp_path, capsys):
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("tag_lenght: 10\n")
    assert main(["preflight", "--directory", str(workdir), "--configfile", str(overlay)]) == 2
    lines, _ = report(capsys)
    assert lines == ["failed  config: unknown key 'tag_lenght' (did you mean 'tag_length'?)"]


def test_download_verified_against_its_record(workdir):
    payload = workdir / "all.parquet"
    payload.write_bytes(b"PAR1" + bytes(1_000_000))
    folder = workdir / "resources" / "downloads" / "binding_affinity"
    fetch(payload.as_uri(), folder / "all.parquet", min_bytes=1_000_000, retries=1)
    check = preflight.check_download("binding_affinity", workdir)
    assert check.ok and "SHA-256 as recorded" in check.detail
    with open(folder / "all.parquet", "r+b") as handle:  # one byte changed after the download
        handle.seek(100)
        handle.write(b"x")
    check = preflight.check_download("binding_affinity", workdir)
    assert check.status == "failed" and "SHA-256 mismatch" in check.detail
    assert "delete" in check.detail
    (folder / "all.parquet.source.json").unlink()  # placed by hand: sizes only, as fetch would
    check = preflight.check_download("binding_affinity", workdir)
    assert check.ok and "placed by hand" in check.detail
    (folder / "all.parquet").write_bytes(b"")
    check = preflight.check_download("binding_affinity", workdir)
    assert check.status == "failed" and "got 0 bytes" in check.detail


def test_torn_weights_and_a_folder_from_another_source_fail(tiny_model_dir, tmp_path):
    folder = tmp_path / "tiny_random"
    shutil.copytree(tiny_model_dir, folder)
    config = {"model": {"name": "tiny_random", "source": "tiny-random", "hub_id": ""}}
    assert preflight.check_model(config, folder).ok
    hub = {"model": {"name": "tiny_random", "source": "hub", "hub_id": "huggyllama/llama-7b"}}
    check = preflight.check_model(hub, folder)
    assert check.status == "failed" and "was made from tiny-random" in check.detail
    assert "--until prepare_model" in check.detail
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    check = preflight.check_model(config, folder)
    assert check.status == "failed" and "truncated?" in check.detail


def test_a_tokenizer_without_single_characters_fails(tiny_model_dir, tmp_path):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    chars = sorted(set(string.printable) - {"@", "\\"})
    vocab = {token: i for i, token in enumerate(["<pad>", "<unk>", "<s>", "</s>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(folder)
    check = preflight.check_tokenizer({"char_level": True}, folder)
    assert check.status == "failed"
    assert "2 character(s)" in check.detail and "'@' -> ['<unk>']" in check.detail
    assert preflight.check_tokenizer({"char_level": False}, folder).ok


def test_a_sentencepiece_tokenizer_passes_on_its_character_entries(tiny_model_dir, tmp_path):
    """LLaMA's kind (Metaspace): a lone "C" encodes as "▁C", so the check must see the "C" entry the
    character path looks up; a character missing from the vocabulary comes out as "▁" + unknown."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    def folder_with(chars: set[str], name: str) -> Path:
        pieces = ["<unk>", "<s>", "</s>", "\u2581", "\u2581C", *sorted(chars)]
        backend = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)},
                                       merges=[("\u2581", "C")], unk_token="<unk>", fuse_unk=True))
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                         prepend_scheme="always")
        folder = tmp_path / name
        shutil.copytree(tiny_model_dir, folder)
        PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                eos_token="</s>").save_pretrained(folder)
        return folder

    every = set("".join(preflight.SMILES_SAMPLES)) | set(preflight.PROTEIN_SAMPLE)
    assert preflight.check_tokenizer({}, folder_with(every, "all")).ok
    check = preflight.check_tokenizer({}, folder_with(every - {"@"}, "no_at"))
    assert check.status == "failed" and "'@' -> ['\u2581', '<unk>']" in check.detail


def test_the_tiny_llama_with_a_sentencepiece_tokenizer_is_llamas_kind(tmp_path):
    """tiny-random-llama-sp: the locally trained SentencePiece model and the LlamaTokenizer made
    from it encode alike; LLaMA's special ids, BOS added, no pad token; it passes the check."""
    from transformers import AutoTokenizer

    from tagllm.model_sources import SOURCES as MODEL_SOURCES
    from tagllm.model_sources import prepare_model, sentencepiece_llama_tokenizer

    schema = yaml.safe_load(preflight.SCHEMA.read_text())
    assert schema["properties"]["model"]["properties"]["source"]["enum"] == list(MODEL_SOURCES)
    tokenizer, processor = sentencepiece_llama_tokenizer()
    for text in ("# # Input: The SMILES is <SMILES> CC(=O)O. \n# # Output:", "Привет, мир!",
                 "Ελληνικά é 12345"):
        assert tokenizer(text, add_special_tokens=False).input_ids == processor.encode(text)
    folder = prepare_model("tiny-random-llama-sp", tmp_path / "tiny_sp")
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert type(loaded).__name__ == "LlamaTokenizer" and loaded.pad_token is None
    assert loaded.convert_ids_to_tokens([0, 1, 2, 3]) == ["<unk>", "<s>", "</s>", "<0x00>"]
    ids = loaded("Hi").input_ids
    assert ids[0] == loaded.bos_token_id == 1 and loaded.convert_ids_to_tokens(ids[1:2])[0][0] == \
        "\u2581"
    assert loaded.decode(loaded("Привет", add_special_tokens=False).input_ids) == "Привет"
    assert preflight.check_tokenizer({}, folder).ok


def test_gpu_line_with_and_without_a_gpu(monkeypatch):
    cpu, cuda = {"device": "cpu", "model": {}}, {"device": "cuda", "model": {"dtype": "bfloat16"}}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert preflight.check_gpu(cpu).ok and "no GPU visible" in preflight.check_gpu(cpu).detail
    check = preflight.check_gpu(cuda)
    assert check.status == "failed" and "no GPU visible" in check.detail and "srun" in check.detail
    # A stand-in GPU: the device queries and the bf16 product are stubbed.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Stand-in H100")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    monkeypatch.setattr(preflight, "bf16_matmul_error", lambda device: 0.004)
    check = preflight.check_gpu(cuda)
    assert check.ok and "Stand-in H100 (80 GiB" in check.detail and "bf16" in check.detail
    assert preflight.check_gpu({**cuda, "device": "cuda:1"}).status == "failed"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (7, 5))
    check = preflight.check_gpu(cuda)
    assert check.status == "failed" and "float16" in check.detail


def test_gpu_hours_read_the_prepared_data_present(tmp_path):
    config = paper_config()
    assumed = preflight.check_gpu_hours(config, tmp_path)
    assert "every size assumed" in assumed.detail
    qed = tmp_path / "results" / "data" / "qed"
    qed.mkdir(parents=True)
    pd.DataFrame({"smiles": ["CCO"] * 900, "y": 0.5}).to_parquet(qed / "train.parquet")
    pd.DataFrame({"smiles": ["CCO"] * 100, "y": 0.5}).to_parquet(qed / "test.parquet")
    from tagllm.gpu_figures import data_figures
    from tagllm.gpu_hours import compute

    data = data_figures(config, tmp_path)
    assert data["train_rows_qed"].value == 900 and data["test_rows_qed"].value == 100
    assert data["smiles_chars"].value == 3
    assert data["stage1_rows_SMILES"].value == 900  # <SMILES> trains on the qed dataset
    jobs = compute(preset=config, data=data)["jobs"]
    qed_job = next(j for j in jobs if j["stage"] == "2" and j["task"] == "qed")
    assert qed_job["rows"] == 900
    assert compute(preset=config, data=data)["total_gpu_hours"] < \
        compute(preset=config)["total_gpu_hours"]
    present = preflight.check_gpu_hours(config, tmp_path)
    assert present.ok and "row counts of qed from results/data" in present.detail


def test_each_check_is_one_line():
    check = preflight.Check("model", False, "first\nsecond", missing=True)
    assert check.line() == "missing model: first second"
