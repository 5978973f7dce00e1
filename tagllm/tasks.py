"""The task registry: which tags a task uses, its prompt template (paper Table 5), kind and metric."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    domain_tags: tuple[str, ...]
    function_tag: str
    template: str
    kind: str  # "regression" or "generation"
    metric: str  # headline metric, as in the paper
    label: str = "y"
    char_fields: frozenset[str] = frozenset()
    paper_value: float | None = None  # Tag-LLaMA's number in paper Table 2


@dataclass(frozen=True)
class DomainTag:
    name: str
    template: str  # stage 1: `<tag> text`
    char_fields: frozenset[str] = frozenset()


LANGUAGE_TAGS = ("EN", "FR", "RU", "DE", "IT", "EL", "ES", "PT")
DOMAIN_TAGS: dict[str, DomainTag] = {
    "SMILES": DomainTag("SMILES", "<SMILES> {text}", frozenset({"text"})),
    "Protein": DomainTag("Protein", "<Protein> {text}", frozenset({"text"})),
    **{lang: DomainTag(lang, f"<{lang}> {{text}}") for lang in LANGUAGE_TAGS},
}

TASKS: dict[str, Task] = {
    "qed": Task(
        name="qed",
        domain_tags=("SMILES",),
        function_tag="QED",
        template="# # Input: The SMILES of the molecule is <SMILES> {smiles}. \n"
                 "# # Output: The quantitative estimate of druglikeness is <QED>",
        kind="regression",
        metric="mse",
        char_fields=frozenset({"smiles"}),
        paper_value=0.008,
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


def get_domain_tag(name: str) -> DomainTag:
    if name not in DOMAIN_TAGS:
        raise KeyError(f"unknown domain tag {name!r}; known: {sorted(DOMAIN_TAGS)}")
    return DOMAIN_TAGS[name]
