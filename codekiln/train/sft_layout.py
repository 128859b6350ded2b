"""Instruction tuning: how a pair becomes tokens (`encode_pairs`); the loss is taken on the
completion only.

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from codekiln.curate.commits import COMMIT_AFTER, COMMIT_BEFORE, COMMIT_MSG
from codekiln.errors import UserError
from codekiln.tokenizer.special import EOS
from codekiln.train.sft_pairs import Pair

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
