"""The methods the paper compares, as data: Tag-LLM, its ablations (Table 4, the tag-length sweep) and
the PEFT baselines (Tables 2 and 3).

A method says what the prompt holds before the data (learned domain tags, their names as plain text,
or nothing), whether a learned function tag ends it, how the answer is read (a regression head on the
last hidden state, or the label written as digits and decoded by the LM) and what trains (tags, a
LoRA adapter, prompt-tuning virtual tokens, or the head alone). Trainers and evaluation read these
fields; nothing else about a method is special-cased.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tagllm.tasks import Task

DOMAIN_FORMS = ("tags", "text", "none")
ADAPTERS = ("none", "lora", "prompt_tuning")
# PEFT baseline settings of paper section 4.
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.05


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # how tables name it
    domain: str = "tags"  # "tags": learned domain tags; "text": the literal `<SMILES>`; "none"
    function_tag: bool = True
    head: bool = True  # False: the label is written as text after the prompt and decoded
    adapter: str = "none"
    function_tag_length: int | None = None  # None: the run's tag length (the sweep overrides it)
    enrich: bool = False  # update the domain tags too, with their stage-1 LM loss kept
    enriched_tags_from: str | None = None  # method whose run of another task supplies domain tags
    paper: Mapping[str, float] = field(default_factory=dict)  # paper value by task

    def __post_init__(self) -> None:
        if self.domain not in DOMAIN_FORMS:
            raise ValueError(f"method {self.name}: domain must be one of {DOMAIN_FORMS}")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"method {self.name}: adapter must be one of {ADAPTERS}")

    @property
    def trainer(self) -> str:
        """Which trainer learns it: "tags" (a function tag, maybe enriched domain tags), "adapter"
        (LoRA or prompt tuning), "probe" (the head alone) or "none" (direct prompting)."""
        if self.adapter != "none":
            return "adapter"
        if self.function_tag or self.enrich:
            return "tags"
        return "probe" if self.head else "none"

    @property
    def uses_domain_tags(self) -> bool:
        return self.domain == "tags"

    def prompt(self, task: Task, row: Mapping[str, object]) -> str:
        """The task's prompt for one row, with this method's domain and function parts."""
        text = task.prompt(row)
        if not self.function_tag:  # with the space or line break before it
            text = re.sub(rf"\s?<{re.escape(task.function_tag)}>", "", text)
        if self.domain == "none":  # with the space after each
            for tag in task.domain_tags:
                text = re.sub(rf"<{re.escape(tag)}>\s?", "", text)
        return text

    def virtual_tokens(self, task: Task, tag_length: int) -> int:
        """Prompt tuning's virtual tokens: the total length of the tags Tag-LLM uses (paper: 20 for
        QED, 30 for BA)."""
        return tag_length * (len(task.domain_tags) + 1)


# Paper Table 2 (Descriptor MSE, QED MSE, DC MAE, BA Pearson r), LLaMA-7B.
_TABLE2 = {
    "tagllm": {"descriptor": 0.005, "qed": 0.008, "dc": 12.21, "ba": 0.527},
    "linear_probe": {"descriptor": 0.041, "qed": 0.012, "dc": 24.11, "ba": 0.180},
    "prompt_tuning": {"descriptor": 0.011, "qed": 1.387, "dc": 17.65, "ba": 0.054},
    "lora": {"descriptor": 0.006, "qed": 0.020, "dc": 13.46, "ba": 0.125},
    "nearest_neighbour": {"descriptor": 0.012, "qed": 0.040},
}
# Paper Table 3: PEFT baselines with a regression head and/or text-form domain info.
_TABLE3 = {
    "lora_text": {"descriptor": 0.008, "qed": 0.015, "dc": 12.79, "ba": 0.552},
    "prompt_tuning_text": {"descriptor": 0.007, "qed": 0.0085, "dc": 14.73, "ba": 0.37},
    "linear_probe_text": {"descriptor": 0.049, "qed": 0.011, "dc": 14.64, "ba": 0.31},
    "lora_head": {"descriptor": 0.007, "qed": 0.015, "dc": 12.53, "ba": 0.534},
    "prompt_tuning_head": {"descriptor": 0.008, "qed": 0.0083, "dc": 15.29, "ba": 0.38},
}
# Paper Table 4: ablations on DC (MAE).
_TABLE4 = {"no_domain_tags": 12.39, "no_function_tags": 21.14, "no_head": 23.42, "enriched": 12.10}

_NO_TAGS = {"domain": "none", "function_tag": False}
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("tagllm", "Tag-LLM", paper=_TABLE2["tagllm"]),
    # Tag-LLM trained on the baselines' (smaller) budget, where they cannot afford its own.
    Method("tagllm_budget", "Tag-LLM at the baselines' budget"),
    # Table 2 baselines: no domain information; LoRA and prompt tuning decode the label as text.
    Method("linear_probe", "linear probing", **_NO_TAGS, paper=_TABLE2["linear_probe"]),
    Method("prompt_tuning", "prompt tuning", **_NO_TAGS, head=False, adapter="prompt_tuning",
           paper=_TABLE2["prompt_tuning"]),
    Method("lora", "LoRA", **_NO_TAGS, head=False, adapter="lora", paper=_TABLE2["lora"]),
    # Table 3: the same baselines given the help Tag-LLM has (all with a regression head).
    Method("lora_text", "LoRA + text-form domain info", domain="text", function_tag=False,
           adapter="lora", paper=_TABLE3["lora_text"]),
    Method("prompt_tuning_text", "prompt tuning + text-form domain info", domain="text",
           function_tag=False, adapter="prompt_tuning", paper=_TABLE3["prompt_tuning_text"]),
    Method("linear_probe_text", "linear probing + text-form domain info", domain="text",
           function_tag=False, paper=_TABLE3["linear_probe_text"]),
    Method("lora_head", "LoRA + regression head", **_NO_TAGS, adapter="lora",
           paper=_TABLE3["lora_head"]),
    Method("prompt_tuning_head", "prompt tuning + regression head", **_NO_TAGS,
           adapter="prompt_tuning", paper=_TABLE3["prompt_tuning_head"]),
    # Table 4 ablations.
    Method("no_domain_tags", "without domain tags", domain="none",
           paper={"dc": _TABLE4["no_domain_tags"]}),
    Method("no_function_tags", "without function tags", function_tag=False,
           paper={"dc": _TABLE4["no_function_tags"]}),
    Method("no_head", "without regression head (digits decoded)", head=False,
           paper={"dc": _TABLE4["no_head"]}),
    Method("tagllm_enrich", "Tag-LLM, domain tags enriched", enrich=True),
    Method("enriched", "enriched domain tags (from the enriching run)",
           enriched_tags_from="tagllm_enrich", paper={"dc": _TABLE4["enriched"]}),
    # Zero training: the base model asked in plain words (the label or translation decoded).
    Method("direct_prompting", "direct prompting (no training)", **_NO_TAGS, head=False),
]}
SWEEP_PATTERN = re.compile(r"tagllm_p(\d+)")
# Paper values of the predictors that need no model (Table 2).
MODEL_FREE_PAPER: dict[str, Mapping[str, float]] = {
    "train_mean": {}, "nearest_neighbour": _TABLE2["nearest_neighbour"]}


def get_method(name: str) -> Method:
    """A method by name; `tagllm_p<N>` is Tag-LLM with a function tag of length N (the sweep)."""
    if name in METHODS:
        return METHODS[name]
    match = SWEEP_PATTERN.fullmatch(name)
    if match and int(match.group(1)) >= 1:
        length = int(match.group(1))
        return Method(name, f"Tag-LLM, p = {length}", function_tag_length=length)
    raise KeyError(f"unknown method {name!r}; known: {sorted(METHODS)} and tagllm_p<N>")


def format_label(value: float) -> str:
    """How a label is written when a method decodes it as text (two decimals, as a human would)."""
    return f"{value:.2f}"


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_label(text: str) -> float | None:
    """The first number in decoded text, or None if there is none."""
    match = _NUMBER.search(text)
    return float(match.group()) if match else None
