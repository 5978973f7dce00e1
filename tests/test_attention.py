"""Direct attention: equal to SDPA (values and gradients), taken only where it is meant to be."""

import pytest
import torch
import torch.nn.functional as F

from tagllm import attention
from tagllm.objectives import PrefixStore, regression_hidden
from tests.test_forward import relative_error, setup


def reference(query, key, value, mask, scale):
    """SDPA over heads repeated as transformers' `repeat_kv` does."""
    group = query.shape[1] // key.shape[1]
    key, value = (t.repeat_interleave(group, dim=1) for t in (key, value))
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_grouped_attention_equals_sdpa(dtype, tolerance):
    torch.manual_seed(0)
    batch, heads, kv_heads, queries, keys, dim = 3, 6, 2, 4, 11, 8
    query = torch.randn(batch, heads, queries, dim, dtype=dtype, requires_grad=True)
    key = torch.randn(batch, kv_heads, keys, dim, dtype=dtype, requires_grad=True)
    value = torch.randn(batch, kv_heads, keys, dim, dtype=dtype, requires_grad=True)
    # Causal over the suffix after a left-padded prefix of 7 (example 1 has 3 pads, example 2 one).
    prefix = torch.ones(batch, 7, dtype=torch.bool)
    prefix[1, :3] = False
    prefix[2, :1] = False
    causal = torch.ones(queries, queries, dtype=torch.bool).tril()
    mask = torch.cat([prefix[:, None, :].expand(batch, queries, 7),
                      causal.expand(batch, queries, queries)], dim=-1).unsqueeze(1)

    ours = attention.grouped_attention(query, key, value, mask, dim ** -0.5)
    weights = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weights).sum(), (query, key, value))
    theirs = reference(query, key, value, mask, dim ** -0.5)
    expected = torch.autograd.grad((theirs * weights).sum(), (query, key, value))

    assert ours.shape == (batch, queries, heads, dim)
    assert relative_error(ours.float(), theirs.float()) < tolerance
    for got, want in zip(grads, expected, strict=True):
        assert relative_error(got.float(), want.float()) < tolerance


def test_causal_mask_is_aligned_to_the_last_keys():
    assert attention.causal_mask(2, 4, torch.device("cpu"))[0, 0].tolist() == [
        [True, True, True, False], [True, True, True, True]]


def test_half_precision_full_pass_on_cpu_equals_sdpa(tiny_model_dir, monkeypatch):
    """bf16 gradient passes over whole prompts take the direct path on CPUs (no mask from the
    model when nothing is padded, so the causal mask is built here); same result as SDPA."""
    from tagllm.train import Base

    built = []
    original = attention.causal_mask
    monkeypatch.setattr(attention, "causal_mask", lambda *a: built.append(a) or original(*a))
    # A CPU where bf16 is fast (forced here; `tagllm.precision` measures it in real runs).
    base = Base.load(tiny_model_dir, "bfloat16", "cpu", cpu_bf16_inference="true")
    tags, examples = setup(base, ["CCO", "CCN"])  # equal lengths: no padding mask
    results = []
    for implementation in (attention.NAME, "sdpa"):
        base.model.set_attn_implementation(implementation)
        tags.tags["QED"].grad = None
        hidden = regression_hidden(base, tags, examples, None)
        hidden.float().sum().backward()
        results.append((hidden.float(), tags.tags["QED"].grad.clone()))
    (ours, our_grad), (theirs, their_grad) = results
    assert len(built) == base.model.config.num_hidden_layers  # the direct path ran, in every layer
    assert relative_error(ours, theirs) < 2e-2
    assert relative_error(our_grad, their_grad) < 5e-2


def test_half_precision_cpu_passes_keep_sdpa_where_bf16_is_slow(tiny_model_dir, monkeypatch):
    """Where bf16 is not fast on the CPU (AVX2 only), bf16 gradient passes over whole prompts stay
    on SDPA; the tag after a cached prefix still takes the direct path."""
    from tagllm.train import Base

    calls = []
    original = attention.grouped_attention
    monkeypatch.setattr(attention, "grouped_attention",
                        lambda *args: calls.append(args[0].shape) or original(*args))
    base = Base.load(tiny_model_dir, "bfloat16", "cpu", cpu_bf16_inference="false")
    assert base.model.config._attn_implementation == attention.NAME_WITHOUT_CPU_HALF
    tags, examples = setup(base, ["CCO", "CCN"])
    regression_hidden(base, tags, examples, None).float().sum().backward()
    assert calls == []
    regression_hidden(base, tags, examples, PrefixStore(0))
    assert len(calls) == base.model.config.num_hidden_layers


def test_loaded_models_use_it_and_it_runs_only_where_meant(tiny_base, monkeypatch):
    assert tiny_base.model.config._attn_implementation == attention.NAME_WITHOUT_CPU_HALF
    calls = []
    original = attention.grouped_attention
    monkeypatch.setattr(attention, "grouped_attention",
                        lambda *args: calls.append(args[0].shape) or original(*args))
    tags, examples = setup(tiny_base, ["CCO", "c1ccccc1"])

    with torch.no_grad():  # no gradients: SDPA
        regression_hidden(tiny_base, tags, examples, PrefixStore(0))
    assert calls == []
    regression_hidden(tiny_base, tags, examples, None)  # float32 full back-propagation: SDPA
    assert calls == []
    regression_hidden(tiny_base, tags, examples, PrefixStore(0))  # the tag after a prefix
    layers = tiny_base.model.config.num_hidden_layers
    assert len(calls) == layers and all(shape[2] == 3 for shape in calls)  # 3 tag rows


def test_long_half_precision_passes_keep_sdpa(monkeypatch):
    query = torch.zeros(1, 2, 4, 8, dtype=torch.bfloat16)
    assert attention.takes_direct_path(query, query)
    monkeypatch.setattr(attention, "CPU_SCORES_LIMIT", 2 * 4 * 4 - 1)  # one element too many
    assert not attention.takes_direct_path(query, query)
    assert not attention.takes_direct_path(query.float(), query.float())  # float32: SDPA
    with torch.no_grad():
        assert not attention.takes_direct_path(query[:, :, :1], query)  # no gradients: SDPA
    assert attention.takes_direct_path(query.float()[:, :, :1], query.float())  # short suffix


@pytest.mark.parametrize("is_causal", [True, False])
def test_missing_mask_follows_the_causal_flag(is_causal):
    torch.manual_seed(0)
    query = torch.randn(2, 4, 5, 8, dtype=torch.bfloat16, requires_grad=True)
    key, value = (torch.randn(2, 2, 5, 8, dtype=torch.bfloat16) for _ in range(2))
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    ours, _ = attention.direct_attention_forward(module, query, key, value, None,
                                                 is_causal=is_causal)
    mask = attention.causal_mask(5, 5, torch.device("cpu")) if is_causal else None
    theirs = reference(query, key, value, mask, 8 ** -0.5)
    assert relative_error(ours.float(), theirs.float()) < 2e-2
