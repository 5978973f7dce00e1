"""Baselines and ablations on the tiny model: each method trains, saves, reloads and evaluates;
prompts, trainable parameter counts, decoding and the nearest neighbour are checked exactly."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tagllm.baselines import train_baseline
from tagllm.batching import collate, splice_tags
from tagllm.evaluate import evaluate_run
from tagllm.generate import greedy_decode, stop_token_ids
from tagllm.loop import TrainConfig
from tagllm.methods import LORA_RANK, get_method, parse_label
from tagllm.scoring import evaluate_nearest_neighbour, nearest_neighbour_labels
from tagllm.tags import TagTable
from tagllm.tasks import get_task
from tagllm.train import train_domain_tag, train_function_tag

FAST = {"epochs": 1, "lr": 1e-2, "batch_size": 4, "grad_accum": 1, "log_every": 1,
        "checkpoint_every": 0, "max_examples": 8}
P = 4


@pytest.fixture(scope="module")
def smiles_tag(tiny_model_dir, qed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("s1") / "SMILES"
    train_domain_tag(tiny_model_dir, qed_dir / "train.parquet", "smiles", "SMILES", out, P,
                     TrainConfig(**FAST))
    return out


def test_prompts_of_each_domain_form():
    task = get_task("qed")
    row = {"smiles": "CCO"}
    full = get_method("tagllm").prompt(task, row)
    assert full.endswith("<SMILES> {smiles}. \n# # Output: The quantitative estimate of druglikeness "
                         "is <QED>")
    plain = get_method("lora").prompt(task, row)
    assert "<" not in plain and plain.endswith("druglikeness is")
    text = get_method("lora_text").prompt(task, row)
    assert "<SMILES> {smiles}" in text and "<QED>" not in text
    assert get_method("no_domain_tags").prompt(task, row).endswith("is <QED>")
    assert "<SMILES>" not in get_method("no_domain_tags").prompt(task, row)
    assert get_method("tagllm_p5").function_tag_length == 5
    assert get_method("prompt_tuning").virtual_tokens(get_task("ba"), 10) == 30
    with pytest.raises(KeyError, match="unknown method"):
        get_method("tagllm_p0")


def test_parse_label():
    assert parse_label(" 0.53.") == 0.53
    assert parse_label("-12.5 units") == -12.5
    assert parse_label("no number") is None


def test_nearest_neighbour_by_hand():
    train = ["CCCCCC", "c1ccccc1", "CCO"]
    assert nearest_neighbour_labels(train, [1.0, 2.0, 3.0], ["CCCCC", "c1ccccc1O", "CO"]) == \
        [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="at least one"):
        nearest_neighbour_labels([], [], ["C"])


def test_nearest_neighbour_needs_one_input_string(qed_dir, tmp_path):
    metrics = evaluate_nearest_neighbour("qed", qed_dir / "train.parquet", qed_dir / "test.parquet",
                                         tmp_path / "nn")
    assert metrics["method"] == "nearest_neighbour" and metrics["n"] > 0
    with pytest.raises(ValueError, match="one input string"):
        evaluate_nearest_neighbour("dc", qed_dir / "train.parquet", qed_dir / "test.parquet",
                                   tmp_path / "dc")


@pytest.mark.parametrize("method", ["no_domain_tags", "no_head", "tagllm_p2"])
def test_tag_ablations_train_and_evaluate(method, smiles_tag, tiny_model_dir, qed_dir, tmp_path):
    run = tmp_path / "run"
    metrics = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag],
                                 run, P, TrainConfig(**FAST), method_name=method)
    tags = load_file(str(run / "tags.safetensors"))
    hidden = tags["QED"].shape[1]
    p = 2 if method == "tagllm_p2" else P
    assert tags["QED"].shape[0] == p
    assert ("SMILES" in tags) == (method != "no_domain_tags")
    head = 0 if method == "no_head" else hidden
    assert metrics["trainable_parameters"] == p * hidden + head
    result = evaluate_run(tiny_model_dir, run, "qed", qed_dir / "test.parquet", tmp_path / "eval",
                          batch_size=3)
    assert result["method"] == method and result["n"] == len(pd.read_parquet(qed_dir / "test.parquet"))
    if method == "no_head":
        assert 0 <= result["unparsed"] <= result["n"]


def test_probe_trains_only_the_head(smiles_tag, tiny_model_dir, qed_dir, tmp_path):
    run = tmp_path / "probe"
    metrics = train_baseline(tiny_model_dir, "no_function_tags", "qed", qed_dir / "train.parquet",
                             run, P, TrainConfig(**{**FAST, "max_examples": 0}),
                             domain_tag_dirs=[smiles_tag], cpu_bf16_inference="false")
    # A closed-form fit (weights and a bias) on the rows it is given (here, as in the workflow's
    # linear probes, every row).
    assert metrics["trainable_parameters"] == metrics["hidden_size"] + 1
    assert metrics["steps"] == 0 and metrics["probe"]["rows"] == metrics["examples"]
    assert metrics["examples"] == len(pd.read_parquet(qed_dir / "train.parquet"))
    assert metrics["probe"]["train_mse"] <= metrics["probe"]["loo_mse"]
    result = evaluate_run(tiny_model_dir, run, "qed", qed_dir / "test.parquet", tmp_path / "eval")
    assert result["method"] == "no_function_tags"
    # Evaluation reads the features the fit was made on: its predictions on the training rows
    # have the fit's training error (in the same precision: `auto` measures per process, and
    # on a loaded CPU with bf16 units two processes may choose apart).
    again = evaluate_run(tiny_model_dir, run, "qed", qed_dir / "train.parquet", tmp_path / "train",
                         cpu_bf16_inference="false")
    assert again["mse"] == pytest.approx(metrics["probe"]["train_mse"], rel=1e-3)


def _lora_count(model, rank):
    total = 0
    for name, module in model.named_modules():
        if name.endswith(("q_proj", "v_proj")) and isinstance(module, torch.nn.Linear):
            total += rank * (module.in_features + module.out_features)
    return total


@pytest.mark.parametrize("method", ["lora_head", "prompt_tuning", "lora_text"])
def test_peft_baselines_train_and_evaluate(method, tiny_model_dir, tiny_base, qed_dir, tmp_path):
    run = tmp_path / "run"
    metrics = train_baseline(tiny_model_dir, method, "qed", qed_dir / "train.parquet", run, P,
                             TrainConfig(**FAST))
    hidden = tiny_base.info.hidden_size
    spec = get_method(method)
    expected = hidden if spec.head else 0
    if spec.adapter == "lora":
        expected += _lora_count(tiny_base.model, LORA_RANK)
    else:
        expected += spec.virtual_tokens(get_task("qed"), P) * hidden
    assert metrics["trainable_parameters"] == expected
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    run_spec = json.loads((run / "run.json").read_text())
    assert run_spec["method"] == method and "label_mean" in run_spec
    result = evaluate_run(tiny_model_dir, run, "qed", qed_dir / "test.parquet", tmp_path / "eval",
                          max_rows=5)
    assert result["n"] == 5 and result["method"] == method


@pytest.mark.parametrize("method", ["lora_head", "prompt_tuning_text"])
def test_peft_heads_start_and_end_as_tagllm_heads(method, tiny_model_dir, qed_dir, tmp_path):
    # Same settings as Tag-LLM's: the head starts at the probe on the adapted model's features
    # (the first step, over every row, has the fit's training loss) and is refit at the end.
    rows = len(pd.read_parquet(qed_dir / "train.parquet"))
    config = TrainConfig(**{**FAST, "epochs": 1, "batch_size": rows, "grad_accum": 1,
                            "max_examples": 0, "checkpoint_every": 0},
                         head_init="probe", head_refit=True)
    run = tmp_path / "run"
    metrics = train_baseline(tiny_model_dir, method, "qed", qed_dir / "train.parquet", run, P,
                             config, cpu_bf16_inference="false")
    start, end = metrics["probe_init"], metrics["head_refit"]
    assert start["rows"] == end["rows"] == rows
    assert metrics["loss_curve"][0]["loss"] == pytest.approx(start["train_loss"], rel=1e-4)
    scored = evaluate_run(tiny_model_dir, run, "qed", qed_dir / "train.parquet", tmp_path / "eval",
                          cpu_bf16_inference="false")
    assert scored["mse"] == pytest.approx(end["train_mse"], rel=1e-3)


def test_direct_prompting_needs_no_run(tiny_model_dir, qed_dir, tmp_path):
    result = evaluate_run(tiny_model_dir, None, "qed", qed_dir / "test.parquet", tmp_path / "eval",
                          method_name="direct_prompting", train_path=qed_dir / "train.parquet",
                          max_rows=4)
    assert result["method"] == "direct_prompting" and result["n"] == 4
    frame = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    assert {"decoded", "parsed", "y_pred"} <= set(frame.columns)


def test_batched_greedy_decoding_equals_one_at_a_time(tiny_base):
    tokenizer = tiny_base.tokenizer
    tags = TagTable(tiny_base.info)
    encoder = tiny_base.encoder(tags, frozenset())
    examples = [encoder.encode("# # Input: {x}", {"x": x}) for x in ("ab", "a much longer input", "c")]
    model = tiny_base.model

    def decode(chosen):
        batch = collate(chosen, tokenizer.pad_token_id, "left")
        embeds = splice_tags(model.get_input_embeddings(), tags.flat() if tags.names else
                             torch.empty(0, tiny_base.info.hidden_size), batch.input_ids, batch.slots)
        return greedy_decode(model, embeds, batch, 6, set(), tokenizer.pad_token_id)

    together = decode(examples)
    alone = [decode([e])[0] for e in examples]
    assert together == alone
    assert all(len(ids) == 6 for ids in together)


def test_an_answer_starts_with_visible_text(tiny_base):
    tokenizer = tiny_base.tokenizer
    encoder = tiny_base.encoder(TagTable(tiny_base.info), frozenset())
    batch = collate([encoder.encode("# # Input: {x}", {"x": "ab"})], tokenizer.pad_token_id, "left")
    embeds = tiny_base.model.get_input_embeddings()(batch.input_ids)
    free = greedy_decode(tiny_base.model, embeds, batch, 6, set(), tokenizer.pad_token_id)[0]
    first = free[0]  # what the model says first stands in for a line break (a blank stop)
    assert greedy_decode(tiny_base.model, embeds, batch, 6, {first}, tokenizer.pad_token_id) == [[]]
    answer = greedy_decode(tiny_base.model, embeds, batch, 6, {first}, tokenizer.pad_token_id,
                           blank_ids={first})[0]
    # Another token first, then the answer runs until the stop comes up again.
    assert answer and first not in answer
    # A real tokenizer's blanks: white space and special tokens, every line break a stop.
    stops, blanks = stop_token_ids(tokenizer, stop_at_newline=True)
    assert set(tokenizer.all_special_ids) <= blanks
    assert all(not tokenizer.decode([t], skip_special_tokens=True).strip() for t in blanks)
    assert all("\n" in tokenizer.decode([t]) for t in stops - {tokenizer.eos_token_id})


def test_decoded_numbers_fall_back_and_are_clipped():
    from tagllm.evaluate import decoded_predictions

    predictions, clipped = decoded_predictions([0.5, None, 2000.0, -3.0, float("inf")], 0.4, 0.0, 1.0)
    assert predictions == [0.5, 0.4, 1.0, 0.0, 0.4] and clipped == 2


def test_runs_trained_and_scored_together_equal_runs_alone(smiles_tag, tiny_model_dir, qed_dir,
                                                           tmp_path):
    """A sweep and an ablation trained in one process share the frozen prefixes (computed by the
    first run, reused by the others) and end as they do when trained alone; scored together, each
    run's predictions equal its predictions scored alone."""
    from tagllm.evaluate import evaluate_runs
    from tagllm.train import train_function_tags

    methods = ["tagllm", "tagllm_p2", "no_head", "no_domain_tags"]  # the workflow's order
    together = train_function_tags(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag],
                                   [(m, tmp_path / "together" / m) for m in methods], P,
                                   TrainConfig(**FAST), cpu_bf16_inference="false")
    first, sweep = together[0]["prefix_cache"], together[1]["prefix_cache"]
    assert first["prefix_forwards"] > 0 and first["reused_examples"] == 0
    assert sweep["prefix_forwards"] == 0 and sweep["reused_examples"] == FAST["max_examples"]
    assert together[3]["prefix_cache"]["prefix_forwards"] > 0  # no domain tag: another prefix
    for method in methods:
        train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag],
                           tmp_path / "alone" / method, P, TrainConfig(**FAST), method_name=method,
                           cpu_bf16_inference="false")
        for name in ("tags", "head"):
            if method == "no_head" and name == "head":
                continue
            a = load_file(str(tmp_path / "together" / method / f"{name}.safetensors"))
            b = load_file(str(tmp_path / "alone" / method / f"{name}.safetensors"))
            assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), (method, name)
    assert not list((tmp_path / "together").rglob("checkpoint.pt"))  # removed once all are done

    runs = [tmp_path / "together" / m for m in ("tagllm", "tagllm_p2", "no_domain_tags")]
    scored = evaluate_runs(tiny_model_dir, runs, [tmp_path / "eval" / r.name for r in runs], "qed",
                           qed_dir / "test.parquet", batch_size=3, cpu_bf16_inference="false")
    assert scored[1]["prefix_cache"]["reused_examples"] == scored[1]["n"]  # p2 reuses tagllm's
    for run, result in zip(runs, scored, strict=True):
        alone = evaluate_run(tiny_model_dir, run, "qed", qed_dir / "test.parquet",
                             tmp_path / "alone_eval" / run.name, batch_size=3,
                             cpu_bf16_inference="false")
        shared = pd.read_parquet(tmp_path / "eval" / run.name / "predictions.parquet")["y_pred"]
        single = pd.read_parquet(tmp_path / "alone_eval" / run.name / "predictions.parquet")["y_pred"]
        assert result["mse"] == pytest.approx(alone["mse"], rel=1e-4)
        assert (shared - single).abs().max() < 1e-4
    lora = tmp_path / "lora"
    train_baseline(tiny_model_dir, "lora", "qed", qed_dir / "train.parquet", lora, P,
                   TrainConfig(**FAST))
    with pytest.raises(ValueError, match="one per process"):
        evaluate_runs(tiny_model_dir, [runs[0], lora], [tmp_path / "x", tmp_path / "y"], "qed",
                      qed_dir / "test.parquet")


def test_a_killed_job_of_several_runs_skips_the_finished_ones(smiles_tag, tiny_model_dir, qed_dir,
                                                              tmp_path, monkeypatch):
    """The first run keeps its final checkpoint while the second is killed; the rerun resumes the
    first with no step left (same tags) and trains the second."""
    from tagllm import train
    from tagllm.train import train_function_tags

    runs = [("tagllm", tmp_path / "a"), ("tagllm_p2", tmp_path / "b")]
    original = train._train_run

    def killed_second(base, store, method, *args, **kwargs):
        if method.name == "tagllm_p2":
            raise KeyboardInterrupt
        return original(base, store, method, *args, **kwargs)

    monkeypatch.setattr(train, "_train_run", killed_second)
    with pytest.raises(KeyboardInterrupt):
        train_function_tags(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag], runs,
                            P, TrainConfig(**FAST))
    first = load_file(str(tmp_path / "a" / "tags.safetensors"))
    assert (tmp_path / "a" / "checkpoint.pt").is_file()
    monkeypatch.setattr(train, "_train_run", original)
    resumed = train_function_tags(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag],
                                  runs, P, TrainConfig(**FAST))
    assert resumed[0]["resumed_from_step"] == resumed[0]["steps"] > 0
    assert resumed[0]["prefix_cache"]["prefix_forwards"] == 0  # nothing left to compute
    assert resumed[1]["resumed_from_step"] == 0
    assert torch.equal(first["QED"], load_file(str(tmp_path / "a" / "tags.safetensors"))["QED"])
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


def test_seeds_trained_in_one_process_equal_each_seed_alone(smiles_tag, tiny_model_dir, qed_dir,
                                                            tmp_path, monkeypatch):
    """`train-function-tag --run-seeds 0 1`: one model load, the prefixes and the probe start's
    features computed once for both seeds (same rows, same tags), and each seed's run as when
    trained alone."""
    import tagllm.train
    from tagllm.cli import main

    passes = []
    readout = tagllm.train.readout_features
    monkeypatch.setattr(tagllm.train, "readout_features",
                        lambda *args: passes.append(1) or readout(*args))

    common = ["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed",
              "--data", str(qed_dir / "train.parquet"), "--domain-tags", str(smiles_tag),
              "--tag-length", str(P), "--cpu-bf16-inference", "false", "--epochs", "2",
              "--batch-size", "4", "--grad-accum", "1", "--checkpoint-every", "0",
              "--standardize-labels", "--head-init", "probe"]
    together = [tmp_path / "together" / f"seed{s}" for s in (0, 1)]
    main([*common, "--run-seeds", "0", "1", "--out-dir", *map(str, together)])
    assert len(passes) == 1  # the probe start of both seeds (no refit here)
    seed1 = json.loads((together[1] / "metrics.json").read_text())
    assert seed1["config"]["seed"] == 1
    assert seed1["prefix_cache"]["prefix_forwards"] == 0 and seed1["prefix_cache"]["reused_examples"]
    for seed, folder in zip((0, 1), together, strict=True):
        alone = tmp_path / "alone" / f"seed{seed}"
        main([*common, "--seed", str(seed), "--out-dir", str(alone)])
        for name in ("tags", "head"):
            a = load_file(str(folder / f"{name}.safetensors"))
            b = load_file(str(alone / f"{name}.safetensors"))
            assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), (seed, name)
    a, b = (load_file(str(f / "tags.safetensors"))["QED"] for f in together)
    assert not torch.allclose(a, b)  # another batch order: another run
    assert main([*common, "--run-seeds", "0", "--out-dir", "a", "b"]) == 2  # one seed per folder


class _ChatTokenizer:
    """Just enough of a tokenizer: a chat format, and BOS added (or not) on encoding."""

    bos_token = "<s>"

    def __init__(self, chat: bool, adds_bos: bool) -> None:
        self.chat_template = "{{ messages }}" if chat else None
        self.adds_bos = adds_bos

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return f"<s>[user] {messages[0]['content']} [assistant]"

    def __call__(self, text, add_special_tokens):
        return type("Encoding", (), {"input_ids": [1] if self.adds_bos else []})


def test_direct_translation_reference_is_the_reply_in_the_chat_format():
    from tagllm.evaluate import direct_translation_target
    from tagllm.tasks import as_task

    row = {"src_lang": "en", "tgt_lang": "fr", "src": "Hello", "tgt": "Bonjour"}
    task = as_task("translate")
    # The chat reply itself (the encoder ends it with the end token); without a chat format,
    # the answer as Tag-LLM is trained to give it after "Output:".
    assert direct_translation_target(_ChatTokenizer(True, adds_bos=False), task, row) == "Bonjour"
    assert direct_translation_target(_ChatTokenizer(False, adds_bos=True), task, row) == \
        " Bonjour\n" == task.target(row)


def test_direct_translation_asks_an_instruct_model_in_its_chat_format():
    from tagllm.evaluate import DIRECT_TRANSLATION, direct_translation_template

    chat = direct_translation_template(_ChatTokenizer(True, adds_bos=False), "en", "fr")
    assert chat == "<s>[user] Translate from English to French: {src} [assistant]"
    # Where the encoder adds BOS itself, the template's own is dropped (no BOS twice).
    assert direct_translation_template(_ChatTokenizer(True, adds_bos=True), "en", "fr") == \
        "[user] Translate from English to French: {src} [assistant]"
    plain = direct_translation_template(_ChatTokenizer(False, adds_bos=True), "es", "pt")
    assert plain == DIRECT_TRANSLATION.format(src_name="Spanish", tgt_name="Portuguese",
                                              src="{src}")
