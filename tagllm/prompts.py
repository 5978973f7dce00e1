"""Prompts with tag placeholders, encoded into token ids plus tag slots.

A template such as ``"The SMILES is <SMILES> {smiles}. <QED>"`` holds literal text, ``{field}``
placeholders and ``<Tag>`` markers (only names in the tag table count as tags, so other ``<...>`` text
stays text). Encoding gives, per position, either a token id or a slot: a row of the tag table's
`flat()` matrix. Fields listed as character-level (protein and SMILES strings, as in the paper) are
tokenised one character at a time. Between tags and character-level fields, literal text and the
values of text fields are encoded as one string, as the tokenizer would see the prompt written out;
with a SentencePiece tokenizer (LLaMA, Mistral) only the prompt's first piece keeps the word-start
`▁` that such a tokenizer puts before every string, so the prompt reads as its template does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

NO_SLOT = -1
SENTENCEPIECE_SPACE = "\u2581"  # "▁", how SentencePiece (LLaMA, Mistral) writes a space
# Encoded before a piece that does not start the prompt, then dropped: see `_encode_later`.
LINE_BREAK = "\n"


_PRINTABLE_BYTES = [*range(33, 127), *range(161, 173), *range(174, 256)]
_SHIFTED_BYTES = [b for b in range(256) if b not in _PRINTABLE_BYTES]
# GPT-2's byte-to-unicode table: printable bytes stand for themselves, the others are shifted past 255.
_BYTE_LEVEL = {**{chr(b): chr(b) for b in _PRINTABLE_BYTES},
               **{chr(b): chr(256 + i) for i, b in enumerate(_SHIFTED_BYTES)}}


def byte_level_char(char: str) -> str | None:
    """How GPT-2-style byte-level BPE (SmolLM2, ...) writes a one-byte character in its vocabulary."""
    return _BYTE_LEVEL.get(char)


FIELD_PATTERN = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Encoded:
    """One encoded prompt: `ids[i]` is a token id, or padding where `slots[i] != NO_SLOT`."""

    ids: tuple[int, ...]
    slots: tuple[int, ...]
    readout: int  # index of the last position of the last tag (where a regression head reads)
    target_start: int  # first position of the target text (== len for prompts without a target)

    def __len__(self) -> int:
        return len(self.ids)

    def first_slot_of(self, slot_rows: set[int]) -> int:
        """First position whose slot is one of `slot_rows` (len if none)."""
        for position, slot in enumerate(self.slots):
            if slot in slot_rows:
                return position
        return len(self.slots)


class PromptEncoder:
    """Turns templates + field values into `Encoded` prompts for one tokenizer and tag table layout."""

    def __init__(self, tokenizer, tag_lengths: Mapping[str, int], tag_offsets: Mapping[str, int],
                 char_fields: frozenset[str] = frozenset(), add_bos: bool | None = None,
                 char_level: bool = True, eos_id: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.eos_id = eos_id  # appended after a target text, so that decoding learns where to stop
        self.tag_lengths = dict(tag_lengths)
        self.tag_offsets = dict(tag_offsets)
        self.char_fields = char_fields if char_level else frozenset()
        self._vocab = tokenizer.get_vocab()
        names = sorted(self.tag_lengths, key=len, reverse=True)
        self._tag_pattern = re.compile("(" + "|".join(f"<{re.escape(n)}>" for n in names) + ")") \
            if names else None
        # A tokenizer adds BOS iff encoding "" with special tokens gives it (LLaMA yes, SmolLM2 no).
        bos = tokenizer("", add_special_tokens=True).input_ids
        self.bos_ids: tuple[int, ...] = tuple(bos) if add_bos is None or add_bos else ()
        self._encode_text = lru_cache(maxsize=65536)(self._encode_text_uncached)
        self._char_ids = lru_cache(maxsize=4096)(self._char_ids_uncached)
        self._pieces = lru_cache(maxsize=256)(self._pieces_uncached)
        # SentencePiece tokenizers (LLaMA, Mistral) start every string they encode with a word-start
        # "▁" (the dummy prefix): right at the start of a prompt, a spurious space before every
        # later piece ("<EN>  Hello", "CCO .") that the prompt as one string would not have.
        first = tokenizer.convert_ids_to_tokens(list(self._encode_text("a")))
        self._line_break = self._encode_text(LINE_BREAK)
        # Only where a line break has tokens of its own (byte fallback), not an unknown token that
        # could fuse with an unknown character after it.
        self._dummy_prefix = bool(first) and str(first[0]).startswith(SENTENCEPIECE_SPACE) and \
            tokenizer.unk_token_id not in self._line_break

    def _encode_text_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _encode_later(self, text: str) -> tuple[int, ...]:
        """`text` as it encodes after other text, without the dummy prefix of a SentencePiece
        tokenizer: encoded after a line break (bytes that merge with nothing in LLaMA's or
        Mistral's vocabulary), whose tokens are then dropped. As `_encode_text` for other
        tokenizers, or where the line break's tokens do not come first."""
        if not self._dummy_prefix:
            return self._encode_text(text)
        ids = self._encode_text(LINE_BREAK + text)
        n = len(self._line_break)
        return ids[n:] if ids[:n] == self._line_break and len(ids) > n else self._encode_text(text)

    def _encode_chars(self, text: str) -> list[int]:
        ids: list[int] = []
        for char in text:
            ids.extend(self._char_ids(char))
        return ids

    def _char_ids_uncached(self, char: str) -> tuple[int, ...]:
        """One token for one character, looked up in the vocabulary: tokenising a lone character
        with a SentencePiece tokenizer would give "▁C" (a word start), not "C"."""
        pieces = [char, byte_level_char(char)]
        if char == " ":
            pieces.append(SENTENCEPIECE_SPACE)
        for piece in pieces:
            if piece is not None and piece in self._vocab:
                return (self._vocab[piece],)
        return self._encode_later(char)  # e.g. a non-ASCII character: as the tokenizer splits it

    def encode(self, template: str, values: Mapping[str, object], target: str | None = None
               ) -> Encoded:
        """Encode `template` filled with `values`; `target` text (if any) is appended after it."""
        ids: list[int] = list(self.bos_ids)
        slots: list[int] = [NO_SLOT] * len(ids)
        readout = -1
        for piece, name in self._pieces(template):
            if name is not None:
                start = self.tag_offsets[name]
                length = self.tag_lengths[name]
                ids.extend([0] * length)
                slots.extend(range(start, start + length))
                readout = len(ids) - 1
                continue
            for text in self._fill(piece, values, at_start=len(ids) == len(self.bos_ids)):
                ids.extend(text)
                slots.extend([NO_SLOT] * len(text))
        target_start = len(ids)
        if target is not None:
            target_ids = self._encode_text(target)
            if not target_ids:
                raise ValueError("target text is empty")
            if self.eos_id is not None:
                target_ids = (*target_ids, self.eos_id)
            ids.extend(target_ids)
            slots.extend([NO_SLOT] * len(target_ids))
        return Encoded(tuple(ids), tuple(slots), readout, target_start)

    def _pieces_uncached(self, template: str) -> tuple[tuple[str, str | None], ...]:
        """The template cut into (text, None) and (marker, tag name) pieces, once per template."""
        if self._tag_pattern is None:
            return ((template, None),)
        return tuple((piece, piece[1:-1] if self._tag_pattern.fullmatch(piece) else None)
                     for piece in self._tag_pattern.split(template) if piece)

    def _fill(self, piece: str, values: Mapping[str, object], at_start: bool = False
              ) -> list[tuple[int, ...]]:
        """Split a literal piece on {field} markers and encode it: literal text and the values of
        text fields run together are encoded as one string, as the tokenizer would see the prompt
        written out (" Hello world" is "ĠHello", "Ġworld" in a byte-level BPE, not
        "Ġ", "Hello", "Ġworld"); character-level fields go in one character per token
        between them. Only text that starts the prompt (`at_start`, nothing before it) keeps a
        SentencePiece tokenizer's dummy prefix."""
        parts: list[tuple[int, ...]] = []
        pending: list[str] = []  # text not yet encoded, in order

        def flush() -> None:
            text = "".join(pending)
            pending.clear()
            if text:
                first = at_start and not parts
                parts.append(self._encode_text(text) if first else self._encode_later(text))

        last = 0
        for match in FIELD_PATTERN.finditer(piece):
            pending.append(piece[last:match.start()])
            name = match.group(1)
            if name not in values:
                raise KeyError(f"template field {{{name}}} has no value")
            value = str(values[name])
            if name in self.char_fields:
                flush()
                parts.append(tuple(self._encode_chars(value)))
            else:
                pending.append(value)
            last = match.end()
        pending.append(piece[last:])
        flush()
        return parts
