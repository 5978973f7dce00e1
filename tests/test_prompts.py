"""Prompt splicing: tags land at the right positions, per example, with either padding side."""

import torch

from tagllm.batching import collate, length_grouped_batches, splice_tags
from tagllm.model_sources import char_tokenizer, sentencepiece_llama_tokenizer
from tagllm.prompts import NO_SLOT, PromptEncoder

TEMPLATE = "In: <SMILES> {smiles}. Out: <QED>"


def encoder(char_fields=frozenset({"smiles"})):
    return PromptEncoder(char_tokenizer(), {"SMILES": 3, "QED": 2, "DC": 2},
                         {"SMILES": 0, "QED": 3, "DC": 5}, char_fields)


def test_tags_at_expected_positions():
    encoded = encoder().encode(TEMPLATE, {"smiles": "CCO"})
    text_before = len("In: ")
    assert encoded.slots[:text_before] == (NO_SLOT,) * text_before
    assert encoded.slots[text_before:text_before + 3] == (0, 1, 2)
    after = text_before + 3 + len(" CCO. Out: ")
    assert encoded.slots[after:] == (3, 4)
    assert encoded.readout == len(encoded) - 1
    assert sum(s != NO_SLOT for s in encoded.slots) == 5


def test_char_fields_one_token_per_character():
    tok = char_tokenizer()
    enc = encoder()
    encoded = enc.encode("<SMILES>{smiles}", {"smiles": "C(=O)Cl"})
    assert list(encoded.ids[3:]) == [tok.convert_tokens_to_ids(c) for c in "C(=O)Cl"]


def test_literal_angle_text_that_is_not_a_tag_stays_text():
    encoded = encoder().encode("<Protein> {smiles}", {"smiles": "C"})
    assert all(s == NO_SLOT for s in encoded.slots)


def test_target_is_appended_after_prompt():
    encoded = encoder().encode(TEMPLATE, {"smiles": "C"}, target="0.5")
    assert encoded.target_start == len(encoded) - 3


def test_different_tags_per_example_and_padding_sides():
    enc = encoder()
    a = enc.encode(TEMPLATE, {"smiles": "CCCCCC"})
    b = enc.encode("<SMILES> {smiles} <DC>", {"smiles": "C"})
    rows = torch.randn(7, 6)
    embedding = torch.nn.Embedding(200, 6)
    for side in ("left", "right"):
        batch = collate([a, b], pad_id=0, side=side)
        embeds = splice_tags(embedding, rows, batch.input_ids, batch.slots)
        for row, example in enumerate([a, b]):
            start = int(batch.offsets[row])
            for position, slot in enumerate(example.slots):
                got = embeds[row, start + position]
                want = rows[slot] if slot != NO_SLOT else embedding.weight[example.ids[position]]
                assert torch.equal(got, want)
            positions = batch.position_ids[row, start:start + len(example)]
            assert positions.tolist() == list(range(len(example)))
        assert batch.attention_mask.sum().item() == len(a) + len(b)


def test_length_grouping_keeps_every_index_once():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_grouped_batches(lengths, 3, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    sorted_batches = length_grouped_batches(lengths, 3, seed=None)
    assert [lengths[i] for i in sorted_batches[0]] == [1, 2, 3]


def llama_like_tokenizer():
    """A SentencePiece-style tokenizer (Metaspace, as LLaMA's): a lone "C" encodes as "▁C"."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "<s>", "</s>", "\u2581", "\u2581C", "C", "O", "(", ")", "=", "\u2581The", "c", "1"]
    backend = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)},
                                   merges=[("\u2581", "C")], unk_token="<unk>", fuse_unk=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


def test_char_level_with_sentencepiece_style_tokenizer():
    tok = llama_like_tokenizer()
    assert tok.convert_ids_to_tokens(tok("C", add_special_tokens=False).input_ids) == ["\u2581C"]
    enc = PromptEncoder(tok, {"SMILES": 2}, {"SMILES": 0}, frozenset({"smiles"}))
    encoded = enc.encode("<SMILES>{smiles}", {"smiles": "CC(=O)c1"})
    assert tok.convert_ids_to_tokens(list(encoded.ids[2:])) == list("CC(=O)c1")
    subword = PromptEncoder(tok, {"SMILES": 2}, {"SMILES": 0}, frozenset({"smiles"}),
                            char_level=False).encode("<SMILES>{smiles}", {"smiles": "CC"})
    assert len(subword) != len(encoded) or subword.ids != encoded.ids


def test_sentencepiece_pieces_inside_a_prompt_get_no_dummy_prefix():
    """LLaMA's tokenizer starts every string it encodes with a word-start "▁": right at the start
    of a prompt, a spurious space before each later piece ("<EN>  Hello", "CCO ."). The prompt's
    text decodes to the template's, and SMILES still go in one bare character per token."""
    tok, _ = sentencepiece_llama_tokenizer()
    enc = PromptEncoder(tok, {"EN": 1, "SMILES": 1}, {"EN": 0, "SMILES": 1}, frozenset({"smiles"}))
    encoded = enc.encode("# # Input: <EN> {src}, with <SMILES> {smiles}. \n# # Output:",
                         {"src": "Hello world", "smiles": "CCO"})
    text = [i for i, slot in zip(encoded.ids, encoded.slots, strict=True) if slot == NO_SLOT]
    assert tok.decode(text, skip_special_tokens=True) == \
        "# # Input:  Hello world, with  CCO. \n# # Output:"  # the two spaces around each tag
    pieces = tok.convert_ids_to_tokens(text)
    assert pieces[0] == "<s>" and pieces[1] == "\u2581#"  # the prompt's start keeps its word start
    start = pieces.index("C")
    assert pieces[start - 1:start + 4] == ["\u2581", "C", "C", "O", "."]


def test_char_level_with_byte_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tagllm.prompts import byte_level_char

    pieces = ["<unk>", "C", "O", "\u0120", "\u0120C", "CO"]
    backend = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[("C", "O")],
                                   unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert byte_level_char(" ") == "\u0120" and byte_level_char("C") == "C"
    enc = PromptEncoder(tok, {}, {}, frozenset({"s"}))
    assert tok.convert_ids_to_tokens(list(enc.encode("{s}", {"s": "CO C"}).ids)) == [
        "C", "O", "\u0120", "C"]


def byte_level_bpe():
    """A byte-level BPE (as SmolLM2's, GPT-2's) trained on a few sentences: words carry their
    leading space ("\u0120Hello")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = ["# # Input: Hello world, Drug 1 is aspirin.", "# # Output: Bonjour le monde"] * 20
    backend.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def test_text_fields_are_tokenised_with_the_text_around_them():
    """A text field and the literal text around it encode as the written-out prompt would: the
    space before "Hello" belongs to its word, not a token of its own; SMILES stay one character
    per token, with the text on either side encoded as it reads."""
    tok = byte_level_bpe()
    enc = PromptEncoder(tok, {"EN": 2, "SMILES": 2}, {"EN": 0, "SMILES": 2}, frozenset({"smiles"}))
    encoded = enc.encode("# # Input: <EN> {src} \n# # Output: Drug 1 is {drug}. <SMILES> {smiles}.",
                         {"src": "Hello world", "drug": "aspirin", "smiles": "CO"})
    after_en = list(encoded.ids[encoded.slots.index(1) + 1:encoded.slots.index(2)])
    assert after_en == tok(" Hello world \n# # Output: Drug 1 is aspirin. ",
                           add_special_tokens=False).input_ids
    assert "\u0120Hello" in tok.convert_ids_to_tokens(after_en)
    after_smiles = tok.convert_ids_to_tokens(list(encoded.ids[encoded.slots.index(3) + 1:]))
    assert after_smiles == ["\u0120", "C", "O", "."]
