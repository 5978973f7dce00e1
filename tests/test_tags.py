"""Tag table: initialisation, save/load round trip, and the errors for a wrong model or length."""

import json

import pytest
import torch

from tagllm.tags import BaseModelInfo, TagFileError, TagTable, mean_embedding_init


def test_init_is_mean_embedding_rescaled_to_mean_norm():
    embeddings = torch.randn(50, 8) + 3.0
    init = mean_embedding_init(embeddings, 4)
    assert init.shape == (4, 8)
    assert torch.allclose(init[0], init[3])
    assert torch.allclose(init[0].norm(), embeddings.norm(dim=1).mean(), rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(init[0], embeddings.mean(0), dim=0)
    assert cosine > 0.9999


def make_table(hidden=8, model_id="m") -> TagTable:
    table = TagTable(BaseModelInfo(model_id, hidden, 100))
    table.add_new("SMILES", "domain", 1, 3, torch.randn(100, hidden), run="t")
    table.add_new("QED", "function", 2, 5, torch.randn(100, hidden), run="t")
    return table


def test_save_load_round_trip(tmp_path):
    table = make_table()
    with torch.no_grad():
        table.tags["QED"].add_(torch.randn(5, 8))
    table.save(tmp_path)
    loaded = TagTable(table.base)
    assert loaded.load(tmp_path) == ["SMILES", "QED"]
    for name in table.names:
        assert torch.equal(loaded.tags[name], table.tags[name])
        assert not loaded.tags[name].requires_grad
    meta = json.loads((tmp_path / "tags.json").read_text())
    assert meta["base_model"]["model_id"] == "m"
    assert [t["kind"] for t in meta["tags"]] == ["domain", "function"]


def test_load_for_other_model_fails_clearly(tmp_path):
    make_table(hidden=8, model_id="model-a").save(tmp_path)
    with pytest.raises(TagFileError, match=r"trained for model-a .* base model is model-b"):
        TagTable(BaseModelInfo("model-b", 16, 100)).load(tmp_path)


def test_load_with_other_tag_length_fails_clearly(tmp_path):
    make_table().save(tmp_path)
    with pytest.raises(TagFileError, match="has length 3 but this run uses tag length 10"):
        TagTable(BaseModelInfo("m", 8, 100)).load(tmp_path, expected_length=10)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(TagFileError, match="missing"):
        TagTable(BaseModelInfo("m", 8, 100)).load(tmp_path)
    make_table().save(tmp_path)
    (tmp_path / "tags.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(TagFileError, match="cannot read"):
        TagTable(BaseModelInfo("m", 8, 100)).load(tmp_path)


def test_offsets_and_trainable_rows():
    table = make_table()
    table.set_trainable("SMILES", False)
    assert table.offsets() == {"SMILES": 0, "QED": 3}
    assert table.trainable_rows() == {3, 4, 5, 6, 7}
    assert table.num_trainable() == 5 * 8
    assert table.flat().shape == (8, 8)
