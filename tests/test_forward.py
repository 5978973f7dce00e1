"""The cached frozen prefix gives the same hidden states and gradients as full back-propagation."""

import pytest
import torch

from tagllm import forward
from tagllm.batching import collate
from tagllm.forward import (
    common_start,
    cut_before,
    full_hidden,
    gather_positions,
    prefix_batch,
    readout_index,
)
from tagllm.objectives import PrefixStore, regression_hidden
from tagllm.tags import TagTable

TEMPLATE = "In: <SMILES> {smiles}. Out: <QED>"


def setup(base, smiles):
    tags = TagTable(base.info)
    tags.add_new("SMILES", "domain", 1, 4, base.embeddings(), run="t")
    tags.add_new("QED", "function", 2, 3, base.embeddings(), run="t")
    with torch.no_grad():  # make the tags differ row by row
        for value in tags.tags.values():
            value.add_(torch.randn_like(value))
    tags.set_trainable("SMILES", False)
    encoder = base.encoder(tags, frozenset({"smiles"}))
    return tags, [encoder.encode(TEMPLATE, {"smiles": s}) for s in smiles]


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_cached_prefix_matches_full_backprop(tiny_base):
    tags, examples = setup(tiny_base, ["CCO", "c1ccccc1C(=O)O", "N"])  # unequal lengths
    weights = torch.randn(tiny_base.info.hidden_size)

    full = regression_hidden(tiny_base, tags, examples, None)
    (full @ weights).sum().backward()
    full_grad = tags.tags["QED"].grad.clone()
    tags.tags["QED"].grad = None

    store = PrefixStore(budget_bytes=10**9)
    cached = regression_hidden(tiny_base, tags, examples, store)
    (cached @ weights).sum().backward()
    cached_grad = tags.tags["QED"].grad.clone()

    assert relative_error(cached, full) < 1e-5
    assert relative_error(cached_grad, full_grad) < 1e-5
    assert tags.tags["SMILES"].grad is None  # the frozen domain tag gets no gradient


def test_reused_cache_gives_identical_results(tiny_base):
    tags, examples = setup(tiny_base, ["CCO", "CC"])
    store = PrefixStore(budget_bytes=10**9)
    first = regression_hidden(tiny_base, tags, examples, store)
    second = regression_hidden(tiny_base, tags, examples, store)
    assert store.computed == 1 and len(store.items) == 2  # one entry per example
    assert torch.equal(first, second)


def test_stored_prefixes_are_found_by_content_in_any_batch(tiny_base):
    """An example reuses its stored prefix in another batch, mixed with new ones and padded
    differently, and the result equals a fresh pass; a tag with other values does not match."""
    tags, examples = setup(tiny_base, ["CCO", "c1ccccc1C(=O)O", "N", "CCN"])
    store = PrefixStore(budget_bytes=10**9)
    regression_hidden(tiny_base, tags, examples[:2], store)
    mixed = [examples[3], examples[1], examples[2]]  # one stored, two new, another padding
    reused = regression_hidden(tiny_base, tags, mixed, store)
    assert store.computed == 2 and store.reused == 1 and len(store.items) == 4
    fresh = regression_hidden(tiny_base, tags, mixed, PrefixStore(0))
    assert relative_error(reused, fresh) < 1e-5
    with torch.no_grad():
        tags.tags["SMILES"].add_(0.5)  # another domain tag: the stored prefixes no longer apply
    regression_hidden(tiny_base, tags, mixed, store)
    assert store.computed == 3 and store.reused == 1


def test_stored_prefixes_with_a_common_start_and_duplicates(tiny_base, monkeypatch):
    """Prefixes computed with the batch's common start run apart ([shared][left pad][rest] in the
    cache) come out right in other batches, and an example twice in a batch is computed once."""
    monkeypatch.setattr(forward, "MIN_SHARED_SAVING", 0)
    tags, examples = setup(tiny_base, ["CCO", "c1ccccc1C(=O)O", "N", "CCN"])
    store = PrefixStore(budget_bytes=10**9)
    regression_hidden(tiny_base, tags, examples[:3], store)
    mixed = [examples[2], examples[3], examples[0], examples[3]]
    reused = regression_hidden(tiny_base, tags, mixed, store)
    assert store.computed == 2 and store.reused == 2 and len(store.items) == 4
    fresh = regression_hidden(tiny_base, tags, mixed, None)
    assert relative_error(reused, fresh) < 1e-5


def test_zero_budget_recomputes(tiny_base):
    tags, examples = setup(tiny_base, ["CCO"])
    store = PrefixStore(budget_bytes=0)
    regression_hidden(tiny_base, tags, examples, store)
    regression_hidden(tiny_base, tags, examples, store)
    assert store.computed == 2 and not store.items


def test_padding_side_does_not_change_readout(tiny_base):
    tags, examples = setup(tiny_base, ["CCO", "c1ccccc1"])
    rows = tags.flat()
    outputs = []
    for side in ("left", "right"):
        batch = collate(examples, tiny_base.tokenizer.pad_token_id, side)
        hidden = full_hidden(tiny_base.model, rows, batch)
        outputs.append(gather_positions(hidden, readout_index(examples, batch)))
    alone = [full_hidden(tiny_base.model, rows, collate([e], 0))[0, -1] for e in examples]
    assert relative_error(outputs[0], outputs[1]) < 1e-5
    assert relative_error(outputs[0], torch.stack(alone)) < 1e-5


def test_common_start_compares_ids_and_slots_and_leaves_each_a_position():
    from tagllm.prompts import Encoded

    def encoded(ids, slots):
        return Encoded(tuple(ids), tuple(slots), len(ids) - 1, len(ids))

    a = encoded([5, 0, 0, 7, 8], [-1, 0, 1, -1, -1])
    assert common_start([a, encoded([5, 0, 0, 7, 9], [-1, 0, 1, -1, -1])]) == 4
    assert common_start([a, encoded([5, 0, 0, 7, 8], [-1, 0, 2, -1, -1])]) == 2  # other tag row
    assert common_start([a, encoded([5, 0, 0], [-1, 0, 1])]) == 2  # the shorter keeps one
    assert common_start([a]) == 4
    assert common_start([a, encoded([6, 0], [-1, 0])]) == 0


@pytest.mark.parametrize("min_saving", [0, 10**6])
def test_common_start_run_once_matches_full_backprop(tiny_base, monkeypatch, min_saving):
    monkeypatch.setattr(forward, "MIN_SHARED_SAVING", min_saving)
    tags, examples = setup(tiny_base, ["CCO", "c1ccccc1C(=O)O", "N", "CCN"])
    prefixes, _ = cut_before(examples, tags.trainable_rows())
    start, rest = prefix_batch(prefixes, tiny_base.tokenizer.pad_token_id)
    assert (start is not None) == (min_saving == 0)
    if start is not None:  # "In: ", the SMILES tag's 4 rows and " ", once for the batch
        shared = len("In: ") + 4 + len(" ")
        assert start.input_ids.shape == (1, shared)
        assert rest.input_ids.shape[1] == max(len(e) for e in examples) - shared - 3
    weights = torch.randn(tiny_base.info.hidden_size)
    results = []
    for store in (None, PrefixStore(0)):
        hidden = regression_hidden(tiny_base, tags, examples, store)
        (hidden @ weights).sum().backward()
        results.append((hidden.detach(), tags.tags["QED"].grad.clone()))
        tags.tags["QED"].grad = None
    (full, full_grad), (cached, cached_grad) = results
    assert relative_error(cached, full) < 1e-5
    assert relative_error(cached_grad, full_grad) < 1e-5
