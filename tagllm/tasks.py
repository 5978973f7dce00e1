"""The task registry: which tags a task uses, its prompt (paper Table 5), kind, metric and stage.

Prompts end with the function tag; a regression head reads the hidden state at its last position,
and a generation task (Translate) continues with the target text after it. `# #` is literal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tagllm.prompts import FIELD_PATTERN

LANGUAGE_TAGS = ("EN", "FR", "RU", "DE", "IT", "EL", "ES", "PT")
LANGUAGE_NAMES = {"en": "English", "fr": "French", "ru": "Russian", "de": "German", "it": "Italian",
                  "el": "Greek", "es": "Spanish", "pt": "Portuguese"}


@dataclass(frozen=True)
class Task:
    name: str
    domain_tags: tuple[str, ...]
    function_tag: str
    template: str  # for translate, the language tags come from each row (see `prompt`)
    kind: str  # "regression" or "generation"
    metric: str  # headline metric, as in the paper
    stage: int  # 2: single-domain function tag; 3: cross-domain
    label: str = "y"
    char_fields: frozenset[str] = frozenset()
    paper_value: float | None = None  # Tag-LLaMA's number in paper Table 2

    def prompt(self, row: Mapping[str, object]) -> str:
        """The template for one row (translate puts the row's source and target language tags)."""
        if self.name != "translate":
            return self.template
        return self.template.replace("<SRC>", f"<{str(row['src_lang']).upper()}>").replace(
            "<TGT>", f"<{str(row['tgt_lang']).upper()}>")

    def target(self, row: Mapping[str, object]) -> str | None:
        """Text the LM must produce after the prompt (generation tasks only), ended by the line
        break at which decoding stops: without it, training never shows where an answer ends."""
        return f" {row['tgt']}\n" if self.kind == "generation" else None

    def columns(self) -> list[str]:
        fields = FIELD_PATTERN.findall(self.template)
        extra = ["src_lang", "tgt_lang", "tgt"] if self.kind == "generation" else [self.label]
        return [*fields, *extra]


@dataclass(frozen=True)
class DomainTag:
    name: str
    template: str  # stage 1: `<tag> text`
    char_fields: frozenset[str] = frozenset()


DOMAIN_TAGS: dict[str, DomainTag] = {
    "SMILES": DomainTag("SMILES", "<SMILES> {text}", frozenset({"text"})),
    "Protein": DomainTag("Protein", "<Protein> {text}", frozenset({"text"})),
    **{lang: DomainTag(lang, f"<{lang}> {{text}}") for lang in LANGUAGE_TAGS},
}

_PROTEIN = "The protein sequence is <Protein> {sequence}. \n"
TASKS: dict[str, Task] = {
    "descriptor": Task(
        "descriptor", ("Protein",), "Descriptor",
        "# # Input: " + _PROTEIN + "# # Output: The descriptor value is <Descriptor>",
        "regression", "mse", 2, char_fields=frozenset({"sequence"}), paper_value=0.005),
    "qed": Task(
        "qed", ("SMILES",), "QED",
        "# # Input: The SMILES of the molecule is <SMILES> {smiles}. \n"
        "# # Output: The quantitative estimate of druglikeness is <QED>",
        "regression", "mse", 2, char_fields=frozenset({"smiles"}), paper_value=0.008),
    "dc": Task(
        "dc", ("SMILES",), "DC",
        "# # Input: Drug 1 is {drug1}. Its SMILES is <SMILES> {smiles1}. \n"
        "Drug 2 is {drug2}. Its SMILES is <SMILES> {smiles2}. \n"
        "# # Output: The drug combination sensitivity score is <DC>",
        "regression", "mae", 2, char_fields=frozenset({"smiles1", "smiles2"}), paper_value=12.21),
    "ba": Task(
        "ba", ("Protein", "SMILES"), "BA",
        "# # Input: " + _PROTEIN + "The SMILES of the drug is <SMILES> {smiles}. \n"
        "# # Output: The binding affinity is <BA>",
        "regression", "pearson", 3, char_fields=frozenset({"sequence", "smiles"}),
        paper_value=0.527),
    "translate": Task(
        "translate", LANGUAGE_TAGS, "Translate",
        "# # Input: <SRC> {src} \n# # Output: <TGT> <Translate>",
        "generation", "spbleu", 3),
}
# The embedded default's synthetic datasets use the same prompts and tags.
TASK_ALIASES = {"dc_synthetic": "dc", "ba_synthetic": "ba"}


def get_task(name: str) -> Task:
    name = TASK_ALIASES.get(name, name)
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted([*TASKS, *TASK_ALIASES])}")
    return TASKS[name]


def get_domain_tag(name: str) -> DomainTag:
    if name not in DOMAIN_TAGS:
        raise KeyError(f"unknown domain tag {name!r}; known: {sorted(DOMAIN_TAGS)}")
    return DOMAIN_TAGS[name]
