"""Instruction tuning data (the StarChat / OctoCoder step): pairs, their layout, packed batches.

Where pairs come from (`read_pairs`):

- a JSONL file of ``{"prompt": ..., "completion": ...}`` objects, one a line;
- a curated folder's commit records (``codekiln curate --commits``), read as OctoPack read
  commits: the message is the instruction, the code before is its input, the code after is
  the answer.

How a pair becomes tokens (`encode_pairs`); the loss is taken on the completion only:

- The tokenizer folder has a chat template (``chat_template.jinja``, or ``chat_template`` in
  ``tokenizer_config.json``): the user says the prompt, the assistant the completion, and the
  completion is what the full conversation adds after the generation prompt, rendered as
  transformers' ``apply_chat_template`` does. The template's own special tokens are matched;
  a special token's text inside a message is encoded as plain text (transformers'
  ``sanitize_control_tokens`` does the same), so data cannot end a turn early.
- No template: the prompt and the completion are encoded as written (special tokens in them
  are matched: without a template the JSONL text *is* the layout) and the eos token ends the
  completion.
- A commit without a template: StarCoder's own format when the tokenizer has its commit
  tokens, ``<commit_before>{before}<commit_msg>{message}<commit_after>`` then ``{after}<eos>``;
  otherwise OctoCoder's ``Question: {message}\\n\\n{before}\\n\\nAnswer: `` then
  ``{after}<eos>``. File and message text is encoded with special-token matching off.

How batches are made (`SftLoader`), as `codekiln.pack.loader.TokenLoader` makes them:

- A seeded hash of each pair's tokens puts it in the train or the valid split, so identical
  pairs always land in the same split.
- Epoch e takes the split's pairs in the order of np.random.default_rng((seed, e)).permutation
  and packs them greedily, in that order, into rows of seq_len + 1 tokens: a pair that does
  not fit in what is left of a row starts the next one, and a pair longer than a row is cut
  at the end. The rows are cut into global batches of batch_size x world_size rows; rank r
  takes the r-th block of each and the last incomplete global batch is dropped.
- The number of rows depends on the order, so epochs differ slightly in length:
  `steps_in_epoch(e)`; `steps_per_epoch` is epoch 0's.
- Attention must not cross pairs: each row comes with segment ids (0, 1, 2, ... per pair,
  -1 on padding) and position ids that restart at 0 with every pair.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from codekiln.curate.commits import COMMIT_AFTER, COMMIT_BEFORE, COMMIT_MSG
from codekiln.errors import UserError
from codekiln.pack.loader import IGNORE_INDEX, restore_position
from codekiln.tokenizer.special import EOS

STATE_VERSION = 1
SPLITS = ("train", "valid")

# The question/answer layout OctoCoder was tuned on, for commits without StarCoder's tokens.
PLAIN_PROMPT = "Question: {prompt}\n\nAnswer: "

# The variables transformers hands a chat template besides the messages (its
# special_tokens_map), read from tokenizer_config.json where they are set.
_TEMPLATE_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)

# Special-token text inside a message is wrapped in these while the template renders, then
# encoded as plain text. Plane 15's private use area rather than the BMP's, which code does
# use (Powerline and Nerd Font glyphs).
_MARK_START = "\U000f0000"
_MARK_END = "\U000f0001"
_MARKED = re.compile(f"{_MARK_START}(.*?){_MARK_END}", re.DOTALL)

# Texts encoded per tokenizer call: large enough to use its threads, small enough that the
# encodings of a big file never live all at once.
_ENCODE_CHUNK = 2048

_COMMIT_MARKERS = re.compile(
    "|".join(re.escape(m) for m in (COMMIT_BEFORE, COMMIT_MSG, COMMIT_AFTER))
)


@dataclass(frozen=True)
class Pair:
    """One training example. A pair read from a commit also keeps its parts: `instruction`
    (the message) and `input` (the code before); its prompt is the two joined OctoPack-style.
    """

    prompt: str
    completion: str
    instruction: str | None = None
    input: str | None = None


def commit_pair(message: str, before: str, after: str) -> Pair:
    """A commit as an instruction pair: the message, a blank line and the code before ask
    for the code after (an added file has no code before, and no blank line).

    >>> pair = commit_pair("Use a set", "x = []", "x = set()")
    >>> pair.prompt, pair.completion
    ('Use a set\\n\\nx = []', 'x = set()')
    >>> commit_pair("Add a module", "", "x = 1").prompt
    'Add a module'
    """
    prompt = f"{message}\n\n{before}" if before else message
    return Pair(prompt, after, instruction=message, input=before)


def parse_commit(content: str) -> tuple[str, str, str] | None:
    """(message, before, after) of a commit record's content, or None where it cannot be
    told apart: the markers StarCoder put between the parts may also occur in the files, and
    only one ``<commit_msg>`` directly followed by ``<commit_after>`` is unambiguous.

    >>> parse_commit("<commit_before>x = []<commit_msg>Use a set<commit_after>x = set()")
    ('Use a set', 'x = []', 'x = set()')
    >>> parse_commit("<commit_before>a<commit_msg>m<commit_after>b<commit_msg>n<commit_after>c")
    """
    if not content.startswith(COMMIT_BEFORE):
        return None
    markers = list(_COMMIT_MARKERS.finditer(content, len(COMMIT_BEFORE)))
    splits = [
        (msg, after)
        for msg, after in zip(markers, markers[1:], strict=False)
        if msg.group() == COMMIT_MSG and after.group() == COMMIT_AFTER
    ]
    if len(splits) != 1:
        return None
    msg, after = splits[0]
    before = content[len(COMMIT_BEFORE) : msg.start()]
    return content[msg.end() : after.start()], before, content[after.end() :]


def read_pairs(path: str | Path, skipped: Counter | None = None) -> list[Pair]:
    """The pairs of a JSONL file or of a curated folder's commit records, in file order.

    A bad JSONL line is a UserError that names it (nothing is read then); commit records
    whose parts cannot be told apart are skipped and counted in `skipped` under
    ``commit_ambiguous``, records of other kinds under ``not_commit``.
    """
    path = Path(path)
    if path.is_dir():
        return _read_curated(path, skipped if skipped is not None else Counter())
    if not path.exists():
        raise UserError(
            f"no instruction pairs at {path}: give a JSONL file of "
            '{"prompt": ..., "completion": ...} lines, or a folder curated with --commits'
        )
    if path.suffix == ".parquet":
        raise UserError(
            f"{path} is one curated shard: give the curated folder that holds it ({path.parent})"
        )
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> list[Pair]:
    pairs = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            where = f"{path} line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise UserError(
                    f'{where}: a {type(record).__name__}, not a {{"prompt", "completion"}} object'
                )
            for key in ("prompt", "completion"):
                if key not in record:
                    raise UserError(f'{where}: no "{key}" field (each line needs both)')
                if not isinstance(record[key], str):
                    kind = type(record[key]).__name__
                    raise UserError(f'{where}: "{key}" is a {kind}, not a string')
            pairs.append(Pair(record["prompt"], record["completion"]))
    if not pairs:
        raise UserError(
            f'{path} holds no pairs: write one {{"prompt": ..., "completion": ...}} object a line'
        )
    return pairs


def _read_curated(folder: Path, skipped: Counter) -> list[Pair]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from codekiln.shards import curated_shards

    pairs = []
    for shard in curated_shards(folder):
        columns = pq.read_schema(shard).names
        if "kind" not in columns or "content" not in columns:
            raise UserError(f"{shard} is not a curated shard: it has no kind or content column")
        table = pq.read_table(shard, columns=["kind", "content"])
        is_commit = pc.fill_null(pc.equal(table["kind"], "commit"), False)
        skipped["not_commit"] += table.num_rows - (pc.sum(is_commit).as_py() or 0)
        for content in table.filter(is_commit)["content"].to_pylist():
            parts = parse_commit(content or "")
            if parts is None:
                skipped["commit_ambiguous"] += 1
                continue
            pairs.append(commit_pair(*parts))
    if not pairs:
        raise UserError(
            f"{folder} holds no usable commit records: curate git sources with "
            f"`codekiln curate SRC -o {folder} --commits`, or give a JSONL file of pairs"
        )
    return pairs


@dataclass(frozen=True)
class ChatFormat:
    """A tokenizer folder's say on the layout: its chat template (None: no template) and the
    special tokens the template may name (``eos_token`` is always set: it also ends a
    completion laid out without a template).

    >>> ChatFormat().eos_token
    '<|endoftext|>'
    """

    template: str | None = None
    tokens: dict[str, str] = field(default_factory=lambda: {"eos_token": EOS})

    def __post_init__(self) -> None:
        if self.template is not None and not isinstance(self.template, str):
            raise UserError(f"a chat template must be a Jinja string, not {self.template!r}")
        eos = self.tokens.get("eos_token")
        if not isinstance(eos, str) or not eos:
            raise UserError(f"the chat format needs an eos token string, not {eos!r}")

    @property
    def eos_token(self) -> str:
        return self.tokens["eos_token"]

    def eos_id(self, tokenizer) -> int:
        """The eos token's id in `tokenizer`: what ends a completion without a template, and
        the padding of a packed row."""
        token_id = tokenizer.token_to_id(self.eos_token)
        if token_id is None:
            raise UserError(
                f"the tokenizer has no {self.eos_token!r} token (its eos token): set eos_token "
                "in the tokenizer folder's tokenizer_config.json to a token it has"
            )
        return token_id


def load_chat_format(tokenizer_dir: str | Path | None) -> ChatFormat:
    """The chat format of a tokenizer folder (or of the folder of a tokenizer.json).

    The template is ``chat_template.jinja`` where there is one (transformers 5 saves it
    there), else ``tokenizer_config.json``'s ``chat_template``: a string, or a list of
    ``{"name", "template"}`` of which "default" is used. The eos token is the config's
    ``eos_token``, else ``<|endoftext|>``.
    """
    if tokenizer_dir is None:
        return ChatFormat()
    folder = Path(tokenizer_dir)
    if not folder.exists():
        raise UserError(f"no tokenizer at {folder}: give the tokenizer folder")
    if not folder.is_dir():
        folder = folder.parent
    from codekiln.tokenizer.family import read_json_object, token_text

    config_file = folder / "tokenizer_config.json"
    config = read_json_object(config_file) if config_file.exists() else {}
    tokens = {name: token_text(config.get(name)) for name in _TEMPLATE_TOKENS}
    tokens = {name: value for name, value in tokens.items() if value}
    tokens.setdefault("eos_token", EOS)
    template_file = folder / "chat_template.jinja"
    if template_file.exists():
        template = template_file.read_text(encoding="utf-8")
    else:
        template = _default_template(config.get("chat_template"), config_file)
    return ChatFormat(template, tokens)


def _default_template(template, config_file: Path) -> str | None:
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if isinstance(named.get("default"), str):
            return named["default"]
        raise UserError(
            f"{config_file} has named chat templates ({', '.join(map(str, named))}) but none "
            'called "default": name the one to train with "default"'
        )
    raise UserError(f"{config_file}'s chat_template is neither a string nor a list of templates")


@lru_cache(maxsize=8)
def _compile(template: str):
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise UserError("chat templates need jinja2: pip install jinja2") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters, which a prompt must keep.
        return json.dumps(
            value,
            ensure_ascii=ensure_ascii,
            indent=indent,
            separators=separators,
            sort_keys=sort_keys,
        )

    # The environment transformers renders chat templates in, less strftime_now: a date in
    # the prompt would make the data depend on the day it was tokenized (templates that use
    # it check `strftime_now is defined` and fall back to a fixed date).
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise UserError(f"the chat template does not parse: {exc}") from None


def render_chat(
    template: str, messages: list[dict], add_generation_prompt: bool = False, **tokens: str
) -> str:
    """The text `template` makes of `messages`, as transformers' apply_chat_template(...,
    tokenize=False) makes it; `tokens` are the special-token variables (eos_token=...).

    >>> t = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    >>> t += "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    >>> render_chat(t, [{"role": "user", "content": "hi"}], add_generation_prompt=True)
    '<|user|>hi<|assistant|>'
    """
    import jinja2

    try:
        return _compile(template).render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **tokens,
        )
    except jinja2.TemplateError as exc:
        raise UserError(f"the chat template failed: {exc}") from None


# A layout piece: an id, or text with whether special tokens in it are matched.
_Piece = int | tuple[str, bool]


class _Layout:
    """The pieces a pair's prompt and completion are encoded from, for one tokenizer."""

    def __init__(self, tokenizer, chat: ChatFormat):
        self.chat = chat
        self.eos_id = chat.eos_id(tokenizer)
        commit_ids = [tokenizer.token_to_id(t) for t in (COMMIT_BEFORE, COMMIT_MSG, COMMIT_AFTER)]
        self.commit_ids = None if None in commit_ids else commit_ids
        added = sorted(
            {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.content},
            key=len,
            reverse=True,
        )
        self.control = re.compile("|".join(map(re.escape, added))) if added else None

    def __call__(self, pair: Pair) -> tuple[list[_Piece], list[_Piece]]:
        if self.chat.template is not None:
            return self._chat(pair)
        if pair.instruction is None:
            return [(pair.prompt, True)], [(pair.completion, True), self.eos_id]
        completion: list[_Piece] = [(pair.completion, False), self.eos_id]
        if self.commit_ids is None:
            return [(PLAIN_PROMPT.format(prompt=pair.prompt), False)], completion
        before, msg, after = self.commit_ids
        prompt = [before, (pair.input or "", False), msg, (pair.instruction, False), after]
        return prompt, completion

    def _chat(self, pair: Pair) -> tuple[list[_Piece], list[_Piece]]:
        user = {"role": "user", "content": self._mark(pair.prompt)}
        assistant = {"role": "assistant", "content": self._mark(pair.completion)}
        template, tokens = self.chat.template, self.chat.tokens
        assert template is not None
        prompt = render_chat(template, [user], add_generation_prompt=True, **tokens)
        full = render_chat(template, [user, assistant], add_generation_prompt=False, **tokens)
        if not full.startswith(prompt):
            raise UserError(
                "the chat template renders a conversation that does not begin with the "
                f"generation prompt it renders for the user's turn alone ({_clip(prompt)} vs "
                f"{_clip(full)}), so the completion cannot be cut from it: use a template "
                "whose add_generation_prompt output is a prefix of the full conversation"
            )
        return _unmark(prompt), _unmark(full[len(prompt) :])

    def _mark(self, text: str) -> str:
        text = text.replace(_MARK_START, "").replace(_MARK_END, "")
        if self.control is None:
            return text
        return self.control.sub(lambda m: f"{_MARK_START}{m.group()}{_MARK_END}", text)


def _unmark(text: str) -> list[_Piece]:
    """Rendered text as pieces: marked special-token text plain, the rest matched.

    >>> _unmark("<|user|>say \\U000f0000<|end|>\\U000f0001 please")
    [('<|user|>say ', True), ('<|end|>', False), (' please', True)]
    """
    pieces: list[tuple[str, bool]] = []
    at = 0
    for match in _MARKED.finditer(text):
        pieces += [(text[at : match.start()], True), (match.group(1), False)]
        at = match.end()
    pieces.append((text[at:], True))
    # A template that cut a message between its markers leaves one alone; it is no text.
    out: list[_Piece] = []
    for piece, matched in pieces:
        piece = piece.replace(_MARK_START, "").replace(_MARK_END, "")
        if piece:
            out.append((piece, matched))
    return out


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def encode_pairs(
    pairs: Sequence[Pair], tokenizer, chat: ChatFormat | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(prompt ids, completion ids) of each pair as int32 arrays, laid out as the module
    docstring says. `tokenizer` is a `tokenizers.Tokenizer`; it is not changed."""
    from tokenizers import Tokenizer

    chat = chat or ChatFormat()
    layout = _Layout(tokenizer, chat)
    # Two private copies: whether special tokens are matched is a switch on the tokenizer.
    matching = Tokenizer.from_str(tokenizer.to_str())
    matching.encode_special_tokens = False
    plain = Tokenizer.from_str(tokenizer.to_str())
    plain.encode_special_tokens = True
    out = []
    for start in range(0, len(pairs), _ENCODE_CHUNK):
        plans = [layout(pair) for pair in pairs[start : start + _ENCODE_CHUNK]]
        texts: dict[bool, list[str]] = {True: [], False: []}
        for plan in plans:
            for side in plan:
                for piece in side:
                    if not isinstance(piece, int):
                        texts[piece[1]].append(piece[0])
        encoded = {
            match: iter(
                (matching if match else plain).encode_batch_fast(batch, add_special_tokens=False)
            )
            for match, batch in texts.items()
        }
        for plan in plans:
            sides = []
            for side in plan:
                ids: list[int] = []
                for piece in side:
                    if isinstance(piece, int):
                        ids.append(piece)
                    else:
                        ids.extend(next(encoded[piece[1]]).ids)
                sides.append(np.array(ids, dtype=np.int32))
            out.append((sides[0], sides[1]))
    return out


def split_of(prompt_ids, completion_ids, seed: int) -> float:
    """A pair's place in [0, 1) under `seed`: pairs below valid_fraction are held out. Only
    the tokens decide, so duplicates share a split.

    >>> round(split_of([1, 2], [3], seed=0), 4), round(split_of([1], [2, 3], seed=0), 4)
    (0.7048, 0.1255)
    """
    prompt = np.asarray(prompt_ids, dtype="<i8")
    completion = np.asarray(completion_ids, dtype="<i8")
    digest = hashlib.blake2b(digest_size=8)
    # The prompt length is hashed too, or ([1, 2], [3]) and ([1], [2, 3]) would be one pair.
    digest.update(struct.pack("<QQ", seed, len(prompt)))
    digest.update(prompt.tobytes())
    digest.update(completion.tobytes())
    return int.from_bytes(digest.digest(), "little") / 2**64


def valid_mask(encoded: Sequence[tuple], seed: int, valid_fraction: float) -> np.ndarray:
    """Which pairs are held out: those `split_of` puts below valid_fraction, and at least the
    lowest (with its duplicates) when there are 10 pairs or more; none when fewer.

    >>> pairs = [([i], [i + 1]) for i in range(10)]
    >>> int(valid_mask(pairs, seed=0, valid_fraction=0.02).sum())
    1
    >>> int(valid_mask(pairs[:9], seed=0, valid_fraction=0.5).sum())
    0
    """
    held = np.zeros(len(encoded), dtype=bool)
    if len(encoded) < 10 or valid_fraction == 0:
        return held
    place = np.array([split_of(p, c, seed) for p, c in encoded])
    held = place < valid_fraction
    if not held.any():
        held = place == place.min()
    return held


def pack_rows(lengths: Sequence[int], row_len: int) -> np.ndarray:
    """Where each row starts in a list of pair lengths packed greedily in order: a pair that
    does not fit in the rest of a row starts the next one; one longer than a row has a row
    to itself (and is cut to it).

    >>> pack_rows([3, 4, 2, 9, 1], row_len=6).tolist()
    [0, 1, 3, 4]
    """
    starts = []
    used = row_len  # as if a full row came before the first: the first pair starts a row
    for index, length in enumerate(lengths):
        length = min(int(length), row_len)
        if used + length > row_len:
            starts.append(index)
            used = 0
        used += length
    return np.array(starts, dtype=np.int64)


@dataclass
class SftLoaderConfig:
    seq_len: int
    batch_size: int
    seed: int = 0
    split: str = "train"
    valid_fraction: float = 0.02  # share of pairs held out, by a seeded hash of their tokens

    def __post_init__(self):
        for name in ("seq_len", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"sft {name} must be a whole number >= 1, not {value!r}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            # SeedSequence spreads larger ints over several words, where two (seed, epoch)
            # keys could meet.
            raise UserError(f"sft seed must be a whole number in [0, 2**32), not {self.seed!r}")
        if self.split not in SPLITS:
            raise UserError(f"sft split must be 'train' or 'valid', not {self.split!r}")
        value = self.valid_fraction
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise UserError(
                f"sft valid_fraction is a share of pairs in [0, 1) (e.g. 0.02; 0 for no "
                f"validation split), not {value!r}"
            )
        self.valid_fraction = float(value)  # 0 and 0.0 are one setting in a saved state


@dataclass
class SftBatch:
    input_ids: np.ndarray  # (B, T) int64; eos ids on padding
    # (B, T) int64: the next token where it is a completion token of the same pair, else -100
    labels: np.ndarray
    segment_ids: np.ndarray  # (B, T) int64: 0, 1, 2, ... per pair of the row; -1 on padding
    position_ids: np.ndarray  # (B, T) int64: from 0 at the start of each pair; 0 on padding
    rows: np.ndarray  # (B,) int64: the epoch's packed rows these are


@dataclass(frozen=True)
class SftCounts:
    """What one split holds, for a report; tokens count after truncation, per epoch."""

    train_pairs: int
    valid_pairs: int
    pairs: int  # of this loader's split
    truncated_pairs: int  # longer than seq_len + 1 tokens: cut at the end
    tokens: int
    completion_tokens: int  # tokens the loss is taken on (each completion token but a first)


# Settings a saved position is only valid under.
_STATE_KEYS = (
    "seed",
    "seq_len",
    "global_batch_size",
    "split",
    "valid_fraction",
    "num_pairs",
    "pairs_sha256",
)


class SftLoader:
    """Endless, resumable batches of packed pairs of one split, for one rank.

    `encoded` is `encode_pairs`' output for all pairs (both splits); `pad_id` fills the
    rest of a row (the eos id). Interface as `TokenLoader`'s: `batch(epoch, step)`,
    iteration, `state_dict()` / `load_state_dict()`.
    """

    def __init__(
        self,
        encoded: Sequence[tuple[np.ndarray, np.ndarray]],
        pad_id: int,
        config: SftLoaderConfig,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not isinstance(world_size, int) or world_size < 1:
            raise UserError(f"world_size must be a whole number >= 1, not {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise UserError(f"rank must be in [0, {world_size}), not {rank!r}")
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.pad_id = int(pad_id)
        self.global_batch_size = config.batch_size * world_size
        row_len = config.seq_len + 1

        held = valid_mask(encoded, config.seed, config.valid_fraction)
        wanted = held if config.split == "valid" else ~held
        # A pair a template renders as nothing has nothing to train on or to attend to.
        mine = [
            encoded[i] for i in np.flatnonzero(wanted) if len(encoded[i][0]) + len(encoded[i][1])
        ]
        full = np.array([len(p) + len(c) for p, c in mine], dtype=np.int64)
        self._lengths = np.minimum(full, row_len)
        self._prompt_lengths = np.minimum([len(p) for p, _ in mine], self._lengths).astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]]).astype(np.int64)
        self._tokens = np.concatenate(
            [np.concatenate([p, c])[:row_len] for p, c in mine] or [np.empty(0)]
        ).astype(np.int32)  # half the memory of int64; token ids fit
        self.num_pairs = len(mine)

        targets = self._lengths - np.maximum(self._prompt_lengths, 1)
        self.counts = SftCounts(
            train_pairs=int((~held).sum()),
            valid_pairs=int(held.sum()),
            pairs=self.num_pairs,
            truncated_pairs=int((full > row_len).sum()),
            tokens=int(self._lengths.sum()),
            completion_tokens=int(np.maximum(targets, 0).sum()),
        )
        digest = hashlib.sha256()
        for array in (self._lengths, self._prompt_lengths, self._tokens):
            digest.update(array.astype("<i8").tobytes())
        self.pairs_sha256 = digest.hexdigest()

        # However they are ordered, the pairs fill at least this many rows: a check that
        # holds for every epoch, so none is left without a step.
        least_rows = -(-self.counts.tokens // row_len)
        if least_rows < self.global_batch_size:
            raise UserError(
                f"the {config.split} split has {self.num_pairs:,} pairs ({self.counts.tokens:,} "
                f"tokens), which may fill only {least_rows:,} rows of {row_len:,} tokens; one step "
                f"needs {self.global_batch_size:,} (batch_size {config.batch_size} x "
                f"{world_size} ranks): lower batch_size or seq_len, or add pairs"
            )
        self._packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.steps_per_epoch = self.steps_in_epoch(0)
        self.epoch = 0
        self.step = 0  # batches of the current epoch already handed out

    def _packing(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(pair order, row starts in it) of `epoch`; the two latest epochs are kept."""
        if epoch not in self._packed:
            order = np.random.default_rng((self.config.seed, epoch)).permutation(self.num_pairs)
            starts = pack_rows(self._lengths[order].tolist(), self.config.seq_len + 1)
            self._packed[epoch] = (order, starts)
            for old in list(self._packed)[:-2]:  # oldest first: dicts keep insertion order
                del self._packed[old]
        return self._packed[epoch]

    def num_rows(self, epoch: int) -> int:
        """The rows the pairs pack into in `epoch`, before the last incomplete global batch
        is dropped."""
        return len(self._packing(epoch)[1])

    def steps_in_epoch(self, epoch: int) -> int:
        return self.num_rows(epoch) // self.global_batch_size

    def __iter__(self) -> Iterator[SftBatch]:
        """Batches from the current position on, across epochs, without end; the position
        moves as each batch is handed out (as `TokenLoader`'s)."""
        while True:
            batch = self.batch(self.epoch, self.step)
            self.step += 1
            if self.step == self.steps_in_epoch(self.epoch):
                self.epoch, self.step = self.epoch + 1, 0
            yield batch

    def batch(self, epoch: int, step: int) -> SftBatch:
        """This rank's batch at (epoch, step); the same every time it is asked for."""
        steps = self.steps_in_epoch(epoch)
        if not 0 <= step < steps:
            raise IndexError(f"step {step} is not in [0, {steps}) of epoch {epoch}")
        size = self.config.batch_size
        first = (step * self.world_size + self.rank) * size
        return self.rows(epoch, np.arange(first, first + size, dtype=np.int64))

    def rows(self, epoch: int, rows: np.ndarray) -> SftBatch:
        """The packed rows `rows` of epoch `epoch` (any number; of `num_rows(epoch)`): what
        `batch` hands out, and the fixed validation set."""
        order, starts = self._packing(epoch)
        ends = np.append(starts[1:], len(order))
        size, row_len = len(rows), self.config.seq_len + 1
        rows = np.asarray(rows, dtype=np.int64)

        tokens = np.full((size, row_len), self.pad_id, dtype=np.int64)
        segments = np.full((size, row_len), -1, dtype=np.int64)
        positions = np.zeros((size, row_len), dtype=np.int64)
        completion = np.zeros((size, row_len), dtype=bool)
        for b, row in enumerate(rows.tolist()):
            at = 0
            for segment, pair in enumerate(order[starts[row] : ends[row]].tolist()):
                length, start = int(self._lengths[pair]), int(self._starts[pair])
                tokens[b, at : at + length] = self._tokens[start : start + length]
                segments[b, at : at + length] = segment
                positions[b, at : at + length] = np.arange(length)
                completion[b, at + int(self._prompt_lengths[pair]) : at + length] = True
                at += length
        # A label is the next token when that token is a completion token of the same pair:
        # never a prompt token, padding, or the first token of the next pair.
        target = completion[:, 1:] & (segments[:, 1:] == segments[:, :-1])
        labels = np.where(target, tokens[:, 1:], IGNORE_INDEX)
        return SftBatch(
            input_ids=tokens[:, :-1].copy(),
            labels=labels,
            segment_ids=segments[:, :-1].copy(),
            position_ids=positions[:, :-1].copy(),
            rows=rows,
        )

    def state_dict(self) -> dict:
        """Where iteration stands, and the settings the position is only valid under."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            **{key: self._setting(key) for key in _STATE_KEYS},
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` was taken. The world size may change as long as the
        global batch (batch_size x world_size) does not."""
        self.epoch, self.step = restore_position(
            state,
            STATE_VERSION,
            {key: self._setting(key) for key in _STATE_KEYS},
            self.steps_in_epoch,
            "the instruction data",
            "the pairs, tokenizer and settings it was saved with",
        )

    def _setting(self, key: str):
        if key in ("global_batch_size", "num_pairs", "pairs_sha256"):
            return getattr(self, key)
        return getattr(self.config, key)


class SftData:
    """A training run's instruction-tuning data: the pairs read, laid out and tokenized once,
    and the loaders over them. `meta` stands in for a pack's meta.json: what the run's identity,
    vocabulary check and card read."""

    def __init__(self, source: Path, tokenizer, folder: Path, fingerprint: str, config) -> None:
        from codekiln.manifest import file_sha256

        self.config = config  # a TrainConfig: seq_len and seed
        pairs = read_pairs(source)
        chat = load_chat_format(folder)
        self.pad_id = chat.eos_id(tokenizer)
        self.encoded = encode_pairs(pairs, tokenizer, chat)
        train = self.loader("train", 1, 0, 1)
        largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
        counts = train.counts
        self.meta = {
            "sft": {
                "source": str(source),
                "sha256": file_sha256(source) if source.is_file() else None,
                "pairs_sha256": train.pairs_sha256,
                "pairs": len(pairs),
                "train_pairs": counts.train_pairs,
                "valid_pairs": counts.valid_pairs,
                "truncated_pairs": counts.truncated_pairs,
                "chat_template": chat.template is not None,
            },
            "tokenizer": {"fingerprint": fingerprint},
            "vocab_size": max(tokenizer.get_vocab_size(with_added_tokens=True), largest + 1),
            "splits": {"train": {"tokens": counts.tokens, "documents": counts.pairs}},
        }

    def loader(self, split: str, batch_size: int, rank: int, world_size: int) -> SftLoader:
        config = self.config
        settings = SftLoaderConfig(config.seq_len, batch_size, seed=config.seed, split=split)
        return SftLoader(self.encoded, self.pad_id, settings, rank, world_size)

    def valid_loader(self) -> SftLoader | None:
        """The valid split's loader for one process (its packed rows are the validation
        set, whatever the world size); None when no pair is held out."""
        try:
            return self.loader("valid", 1, 0, 1)
        except UserError:
            return None
