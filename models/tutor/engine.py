"""llama.cpp for a class: one context, many learners' sequences in one KV cache.

The low-level API of llama-cpp-python (llama.cpp's own C API through ctypes), used the
way llama.cpp's `batched` and `parallel` examples and its server's slots use it: every
answer is a sequence with its own id in one unified KV cache; one `llama_decode` call
advances many of them; a token may belong to several sequences at once, so a prompt
prefix that learners share (the rules and the lesson) is computed once and its cache
cells are shared, not copied (`llama_memory_seq_cp` on a unified cache adds a sequence
id to the same cells). Only the generation thread calls into an engine.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import llama_cpp
from llama_cpp._logger import set_verbose
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from models.tutor.batching import Feed

log = logging.getLogger("schoolbox.tutor")
# Flash attention off: on these CPUs it decoded one learner's answer 10% slower (61.8
# against 68.5 tokens/s, SmolLM2-135M on 2 cores); it would save ~100 MB of compute
# buffer at a 256 MB cache, which a box that batches has.
FLASH_ATTENTION = 0
MIN_CELLS = 2048  # room for at least one long prompt and its answer
MAX_CELLS = 65536


class CannotBatch(Exception):
    """This model or box cannot run answers side by side; serve them one at a time."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.3
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64


class LlamaEngine:
    """A GGUF model with one KV cache of `cache_bytes` shared by `sequences` sequences."""

    def __init__(
        self,
        path: Path,
        *,
        cache_bytes: int,
        sequences: int,
        batch_tokens: int,
        threads: int,
        sampling: Sampling,
    ):
        set_verbose(False)  # llama.cpp's own log: errors only (as Llama(verbose=False))
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_mmap = True  # pages shared with the page cache; quick to load
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ValueError(f"llama.cpp could not load {path.name}")
        self._ctx = None
        try:
            self._check_can_batch()
            self.vocab = llama_cpp.llama_model_get_vocab(self._model)
            cells = min(cache_bytes // self.cell_bytes(), MAX_CELLS) // 256 * 256
            if cells < MIN_CELLS:
                raise CannotBatch(f"{cache_bytes >> 20} MB hold only {cells} cells")
            self.cells, self.sequences, self.batch_tokens = cells, sequences, batch_tokens
            self._ctx = self._context(cells, sequences, batch_tokens, threads)
            self._memory = llama_cpp.llama_get_memory(self._ctx)
            self._batch = llama_cpp.llama_batch_init(batch_tokens, 0, sequences)
            self._sampling = sampling
            self._formatter, self._prefix_formatter = self._chat_formatters()
        except BaseException:
            self.close()
            raise

    # --- setting up --------------------------------------------------------------------

    def _check_can_batch(self) -> None:
        # Recurrent and hybrid models keep one state per sequence that cannot be shared
        # by copying cells; encoder-decoder models need a different call sequence.
        model = self._model
        if llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model):
            raise CannotBatch("a recurrent model")
        if llama_cpp.llama_model_has_encoder(model):
            raise CannotBatch("an encoder-decoder model")

    def _context(self, cells: int, sequences: int, batch_tokens: int, threads: int):
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = cells
        params.n_batch = batch_tokens
        params.n_ubatch = batch_tokens
        params.n_seq_max = sequences
        params.kv_unified = True  # one pool of cells, so a shared prefix is stored once
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = FLASH_ATTENTION
        params.no_perf = True
        context = llama_cpp.llama_init_from_model(self._model, params)
        if not context:
            raise CannotBatch(f"no context of {cells} cells for {sequences} sequences")
        return context

    def _chat_formatters(self) -> tuple[Jinja2ChatFormatter, Jinja2ChatFormatter]:
        template = self.metadata("tokenizer.chat_template")
        if not template:
            raise CannotBatch("the model has no chat template")
        eos = llama_cpp.llama_vocab_eos(self.vocab)
        bos = llama_cpp.llama_vocab_bos(self.vocab)
        eos_text = self.token_text(eos) if eos != -1 else ""
        bos_text = self.token_text(bos) if bos != -1 else ""
        return (
            Jinja2ChatFormatter(template, eos_text, bos_text, add_generation_prompt=True),
            Jinja2ChatFormatter(template, eos_text, bos_text, add_generation_prompt=False),
        )

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    # --- text and tokens ---------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        size = 1 << 16
        buffer = ctypes.create_string_buffer(size)
        length = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, size)
        if length < 0:
            return None
        if length >= size:  # longer than the buffer: ask again with room for it all
            buffer = ctypes.create_string_buffer(length + 1)
            llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, length + 1)
        return buffer.value.decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        room = len(data) + 8
        tokens = (llama_cpp.llama_token * room)()
        # The chat template already wrote any begin-of-text marker (as create_chat_completion
        # does); special tokens in it are parsed, and the learner's text was cleaned of them.
        count = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, room, False, True)
        if count < 0:
            raise ValueError("the prompt could not be tokenized")
        return list(tokens[:count])

    def prompt(self, messages: list[dict]) -> tuple[list[int], int]:
        """The prompt's tokens, and how many of them are the shared part: everything
        before the last message (the rules and the lesson), which every learner's
        question on the same lesson starts with."""
        tokens = self.tokenize(self._formatter(messages=cast(Any, messages)).prompt)
        if len(messages) < 2:
            return tokens, 0
        shared_text = self._prefix_formatter(messages=cast(Any, messages[:-1])).prompt
        shared = self.tokenize(shared_text)
        same = 0  # the shared part's tokens, as they are tokenized inside the whole prompt
        for ours, theirs in zip(shared, tokens, strict=False):
            if ours != theirs:
                break
            same += 1
        return tokens, min(same, len(tokens) - 1)  # the last token must be the question's

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        length = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if length < 0:
            buffer = ctypes.create_string_buffer(-length)
            length = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -length, 0, False)
        return buffer.raw[:length]

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # --- sequences and decoding --------------------------------------------------------

    def sampler(self, seed: int):
        """A sampler chain for one answer: as create_chat_completion's (repeat penalty,
        top-k, top-p, min-p, temperature), with its own history of the answer's tokens."""
        s = self._sampling
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        for sampler in (
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, s.repeat_last_n, s.repeat_penalty, 0.0, 0.0
            ),
            llama_cpp.llama_sampler_init_top_k(s.top_k),
            llama_cpp.llama_sampler_init_top_p(s.top_p, 1),
            llama_cpp.llama_sampler_init_min_p(s.min_p, 1),
            llama_cpp.llama_sampler_init_temp(s.temperature),
            llama_cpp.llama_sampler_init_dist(seed),
        ):
            llama_cpp.llama_sampler_chain_add(chain, sampler)
        return chain

    def free_sampler(self, sampler) -> None:
        llama_cpp.llama_sampler_free(sampler)

    def sample(self, sampler, index: int) -> int:
        """The next token from the logits of the batch's `index`-th token."""
        return int(llama_cpp.llama_sampler_sample(sampler, self._ctx, index))

    def share(self, source: int, target: int, length: int) -> None:
        """Sequence `target` gets the first `length` cells of `source` (shared, not copied)."""
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, 0, length)

    def forget(self, seq: int) -> None:
        """Drop a sequence; cells no other sequence shares become free."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def keep(self, seq: int, length: int) -> None:
        """Cut a sequence to its first `length` cells."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq, length, -1)

    def save(self, seq: int) -> bytes:
        """A sequence's cells, copied out of the cache (b"" if llama.cpp cannot)."""
        size = llama_cpp.llama_state_seq_get_size(self._ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buffer, size, seq)
        return bytes(buffer)[:written]

    def restore(self, seq: int, state: bytes) -> bool:
        """Copy saved cells back into the cache as sequence `seq`; False if no room."""
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        return llama_cpp.llama_state_seq_set_data(self._ctx, buffer, len(state), seq) > 0

    def decode(self, feeds: list[Feed]) -> None:
        """Run one batch; raise MemoryError when the KV cache has no room for it."""
        batch = self._batch
        for i, feed in enumerate(feeds):
            batch.token[i] = feed.token
            batch.pos[i] = feed.pos
            batch.n_seq_id[i] = len(feed.seqs)
            for j, seq in enumerate(feed.seqs):
                batch.seq_id[i][j] = seq
            batch.logits[i] = feed.logits
        batch.n_tokens = len(feeds)
        result = llama_cpp.llama_decode(self._ctx, batch)
        if result == 1:
            raise MemoryError("the tutor's KV cache is full")
        if result != 0:
            raise RuntimeError(f"llama_decode failed ({result})")

    def cell_bytes(self) -> int:
        """Bytes one KV cell takes (keys and values of every layer, at 16 bits)."""
        model = self._model
        head_dim = llama_cpp.llama_model_n_embd(model) // llama_cpp.llama_model_n_head(model)
        kv = llama_cpp.llama_model_n_head_kv(model) * head_dim
        return 2 * 2 * kv * llama_cpp.llama_model_n_layer(model)
