"""The config schema: the default and test overlay validate; typos and bad values fail loudly."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from tagllm.cli import to_cli_flags

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())


def validate(config):
    jsonschema.validate(config, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_default_config_is_valid():
    validate(DEFAULT)


@pytest.mark.parametrize("path, key", [((), "devcie"), (("model",), "sorce"),
                                       (("stage2", "qed", "train"), "learning_rate"),
                                       (("data", "qed"), "max_row")])
def test_typo_is_rejected(path, key):
    config = copy.deepcopy(DEFAULT)
    section = config
    for part in path:
        section = section[part]
    section[key] = 1
    with pytest.raises(jsonschema.ValidationError, match=key):
        validate(config)


def test_bad_values_are_rejected():
    config = copy.deepcopy(DEFAULT)
    config["model"]["source"] = "huggingface"
    with pytest.raises(jsonschema.ValidationError):
        validate(config)
    config = copy.deepcopy(DEFAULT)
    config["stage1"]["Smiles"] = config["stage1"].pop("SMILES")
    with pytest.raises(jsonschema.ValidationError):
        validate(config)


def test_train_settings_become_cli_flags():
    flags = to_cli_flags({"lr": 0.001, "standardize_labels": True, "cache_prefix": False})
    assert flags == "--lr 0.001 --standardize-labels --no-cache-prefix"
    with pytest.raises(ValueError, match="unknown training setting 'learning_rate'"):
        to_cli_flags({"learning_rate": 1})
