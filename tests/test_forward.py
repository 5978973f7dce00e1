"""The cached frozen prefix gives the same hidden states and gradients as full back-propagation."""

import torch

from tagllm.batching import collate
from tagllm.forward import full_hidden, gather_positions, readout_index
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

    full = regression_hidden(tiny_base, tags, examples, None, 0)
    (full @ weights).sum().backward()
    full_grad = tags.tags["QED"].grad.clone()
    tags.tags["QED"].grad = None

    store = PrefixStore(budget_bytes=10**9)
    cached = regression_hidden(tiny_base, tags, examples, store, 0)
    (cached @ weights).sum().backward()
    cached_grad = tags.tags["QED"].grad.clone()

    assert relative_error(cached, full) < 1e-5
    assert relative_error(cached_grad, full_grad) < 1e-5
    assert tags.tags["SMILES"].grad is None  # the frozen domain tag gets no gradient


def test_reused_cache_gives_identical_results(tiny_base):
    tags, examples = setup(tiny_base, ["CCO", "CC"])
    store = PrefixStore(budget_bytes=10**9)
    first = regression_hidden(tiny_base, tags, examples, store, 7)
    second = regression_hidden(tiny_base, tags, examples, store, 7)
    assert store.computed == 1 and 7 in store.items
    assert torch.equal(first, second)


def test_zero_budget_recomputes(tiny_base):
    tags, examples = setup(tiny_base, ["CCO"])
    store = PrefixStore(budget_bytes=0)
    regression_hidden(tiny_base, tags, examples, store, 0)
    regression_hidden(tiny_base, tags, examples, store, 0)
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
