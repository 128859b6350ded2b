"""Any Hugging Face tokenizer folder, and the document format its special tokens call for.

Packing does not ask a tokenizer for a fixed set of tokens; it looks at what the tokenizer has
and lays documents out the way the model family it belongs to was trained:

    starcoder   <reponame>, <filename>, <gh_stars>: one document per file, with an optional
                metadata prefix (StarCoder, StarCoderBase, codekiln's own tokenizer)
    starcoder2  <repo_name>, <file_sep>: one document per repository (StarCoder2)
    plain       neither: the content and the end-of-text token, nothing else (GPT-2,
                SantaCoder, most others)

Fill-in-the-Middle needs three sentinels, spelled as StarCoder does (<fim_prefix>,
<fim_middle>, <fim_suffix>, optionally <fim_pad>) or as SantaCoder does (<fim-prefix>,
<fim-middle>, <fim-suffix>, <fim-pad>). The end-of-text token is the folder's own choice
(tokenizer_config.json, then special_tokens_map.json), else <|endoftext|>.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.manifest import fingerprint
from codekiln.tokenizer.special import (
    EOS,
    FILE_SEP,
    FILENAME,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    GH_STARS,
    REPO_NAME,
    REPONAME,
)

FAMILIES = ("starcoder", "starcoder2", "plain")

# The tokens each family's layout writes besides the end-of-text token; detection tries the
# families in this order.
FAMILY_TOKENS = {
    "starcoder2": (REPO_NAME, FILE_SEP),
    "starcoder": (REPONAME, FILENAME, GH_STARS),
    "plain": (),
}

# The files of a tokenizer folder a copy keeps; tokenizer.json is the one that must exist.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class FimTokens:
    """The Fill-in-the-Middle sentinels of a tokenizer, as token strings (pad may be None).

    >>> FimTokens("<fim-prefix>", "<fim-middle>", "<fim-suffix>", None).to_dict()["pad"] is None
    True
    """

    prefix: str
    middle: str
    suffix: str
    pad: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "prefix": self.prefix,
            "middle": self.middle,
            "suffix": self.suffix,
            "pad": self.pad,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> FimTokens:
        return cls(value["prefix"], value["middle"], value["suffix"], value.get("pad"))


# StarCoder's spelling first: a tokenizer with both (none known) packs with StarCoder's.
FIM_SPELLINGS = (
    FimTokens(FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD),
    FimTokens("<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"),
)


@dataclass(frozen=True)
class DocumentFormat:
    """How documents are laid out for one tokenizer: its family, end-of-text token and FIM
    sentinels (None when it has none).

    >>> DocumentFormat("plain", "</s>", None).tokens()
    ('</s>',)
    """

    family: str
    eos: str
    fim: FimTokens | None

    def tokens(self) -> tuple[str, ...]:
        """Every token string this format writes as a special id."""
        fim = () if self.fim is None else (self.fim.prefix, self.fim.middle, self.fim.suffix)
        pad = (self.fim.pad,) if self.fim is not None and self.fim.pad else ()
        return (self.eos, *FAMILY_TOKENS[self.family], *fim, *pad)


def _folder_and_file(path: str | Path) -> tuple[Path, Path]:
    """(folder, tokenizer.json) for a folder or for a tokenizer.json given itself; the folder
    is where tokenizer_config.json and its siblings are looked for."""
    path = Path(path)
    if path.is_dir():
        return path, path / "tokenizer.json"
    return path.parent, path


def load_any_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a folder with tokenizer.json (or that file itself), with
    no demands on its special tokens. A folder of a "slow" GPT-2-style tokenizer (vocab.json +
    merges.txt, no tokenizer.json) is converted with `transformers` when it is installed.

    A UserError (one line) says what is missing or unreadable and how to fix it.
    """
    from tokenizers import Tokenizer

    folder, file = _folder_and_file(path)
    if not file.exists():
        if folder.is_dir() and (folder / "vocab.json").is_file():
            return _convert_slow(folder)
        raise UserError(
            f"no tokenizer at {path}: give a folder with tokenizer.json "
            "(train one with `codekiln tokenizer train`)"
        )
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exceptions
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{file} is not a readable tokenizer.json ({reason})") from None


def _convert_slow(folder: Path):
    """The fast (`tokenizers`) form of a slow tokenizer folder, through transformers."""
    advice = (
        "save it with a fast tokenizer, which writes tokenizer.json "
        "(AutoTokenizer.from_pretrained(folder).save_pretrained(folder) where it loads)"
    )
    if not (folder / "merges.txt").is_file():
        raise UserError(f"{folder} has vocab.json but no merges.txt or tokenizer.json: {advice}")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UserError(
            f"{folder} holds a slow tokenizer (vocab.json + merges.txt, no tokenizer.json) and "
            f"transformers is not installed to convert it: {advice}"
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(folder)).backend_tokenizer
    except Exception as exc:  # transformers raises many kinds; the user needs the one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{folder} holds a slow tokenizer that transformers cannot convert ({reason}): {advice}"
        ) from None


def tokenizer_files(path: str | Path, tokenizer) -> dict[str, bytes]:
    """What a copy of the tokenizer at `path` holds: file name -> bytes. tokenizer.json is the
    file itself (byte for byte, so its sha256 is the source's) or, for a converted slow
    tokenizer, the converted one; tokenizer_config.json and special_tokens_map.json come
    along when the folder has them."""
    folder, file = _folder_and_file(path)
    files = {"tokenizer.json": file.read_bytes() if file.exists() else tokenizer.to_str().encode()}
    for name in TOKENIZER_FILES[1:]:
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    return files


def read_json_object(path: Path) -> dict[str, Any]:
    """A tokenizer folder's JSON file (tokenizer_config.json, ...); one-line UserError."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}); fix or remove it") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} should hold a JSON object; fix or remove it")
    return value


def token_text(value: Any) -> str | None:
    """A token as tokenizer_config.json writes it: a string, or an AddedToken's dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def eos_token(tokenizer, folder: str | Path | None = None) -> str:
    """The end-of-text token: the folder's tokenizer_config.json `eos_token`, else its
    special_tokens_map.json's, else <|endoftext|> when the vocabulary has it.

    >>> from tokenizers import Tokenizer, models
    >>> tokenizer = Tokenizer(models.BPE())
    >>> tokenizer.add_special_tokens(["<|endoftext|>"])
    1
    >>> eos_token(tokenizer)
    '<|endoftext|>'
    """
    for name in TOKENIZER_FILES[1:]:
        path = Path(folder) / name if folder is not None else None
        if path is None or not path.is_file():
            continue
        token = token_text(read_json_object(path).get("eos_token"))
        if token is None:
            continue
        if tokenizer.token_to_id(token) is None:
            raise UserError(
                f"{path} names eos_token {token!r}, which the tokenizer does not have; "
                "fix the file or the tokenizer"
            )
        return token
    if tokenizer.token_to_id(EOS) is not None:
        return EOS
    raise UserError(
        "the tokenizer has no end-of-text token: it has no <|endoftext|> and its folder's "
        "tokenizer_config.json names no eos_token; add one of them"
    )


def fim_tokens_of(tokenizer) -> FimTokens | None:
    """The tokenizer's FIM sentinels in the first spelling it has all three of (prefix,
    middle, suffix; pad only where it has it), else None.

    >>> from tokenizers import Tokenizer, models
    >>> tokenizer = Tokenizer(models.BPE())
    >>> tokenizer.add_special_tokens(["<fim-prefix>", "<fim-middle>", "<fim-suffix>"])
    3
    >>> fim_tokens_of(tokenizer)
    FimTokens(prefix='<fim-prefix>', middle='<fim-middle>', suffix='<fim-suffix>', pad=None)
    """
    for spelling in FIM_SPELLINGS:
        sentinels = (spelling.prefix, spelling.middle, spelling.suffix)
        if all(tokenizer.token_to_id(t) is not None for t in sentinels):
            has_pad = tokenizer.token_to_id(spelling.pad) is not None
            return FimTokens(*sentinels, spelling.pad if has_pad else None)
    return None


def detect_format(tokenizer, folder: str | Path | None = None, family: str = "auto"):
    """The DocumentFormat for a tokenizer (and its folder, for the eos): `family` "auto"
    picks starcoder2 when it has <repo_name> and <file_sep>, else starcoder when it has
    <reponame>, <filename> and <gh_stars>, else plain. Naming a family forces it; a UserError
    names the tokens the tokenizer lacks for it.

    >>> from tokenizers import Tokenizer, models
    >>> tokenizer = Tokenizer(models.BPE())
    >>> tokenizer.add_special_tokens(["<|endoftext|>", "<repo_name>", "<file_sep>"])
    3
    >>> detect_format(tokenizer)
    DocumentFormat(family='starcoder2', eos='<|endoftext|>', fim=None)
    >>> detect_format(tokenizer, family="plain").family
    'plain'
    """
    if family != "auto" and family not in FAMILIES:
        raise UserError(f"format must be auto or one of {', '.join(FAMILIES)}, not {family!r}")
    if family == "auto":
        family = next(
            name
            for name, tokens in FAMILY_TOKENS.items()
            if all(tokenizer.token_to_id(t) is not None for t in tokens)
        )
    missing = [t for t in FAMILY_TOKENS[family] if tokenizer.token_to_id(t) is None]
    if missing:
        raise UserError(
            f"format {family} needs {', '.join(FAMILY_TOKENS[family])}, and the tokenizer "
            f"lacks {', '.join(missing)}: use format=auto (or plain), or a {family} tokenizer"
        )
    return DocumentFormat(family, eos_token(tokenizer, folder), fim_tokens_of(tokenizer))


def special_token_ids(tokenizer) -> dict[str, int]:
    """Token -> id for every added token flagged special, in id order.

    >>> from tokenizers import Tokenizer, models
    >>> tokenizer = Tokenizer(models.BPE())
    >>> tokenizer.add_special_tokens(["<|endoftext|>", "<file_sep>"])
    2
    >>> special_token_ids(tokenizer)
    {'<|endoftext|>': 0, '<file_sep>': 1}
    """
    decoder = tokenizer.get_added_tokens_decoder()
    return {decoder[i].content: i for i in sorted(decoder) if decoder[i].special}


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of what makes token ids mean what they do: the model's type, vocabulary
    (token -> id) and merges, and the added tokens (content, id, special).

    It is computed from the parsed tokenizer, not the file's bytes: `transformers`'
    save_pretrained rewrites tokenizer.json (merges as "a b" strings or ["a", "b"] pairs, a
    post-processor, other key orders) without changing a single id.

    >>> from tokenizers import Tokenizer, models
    >>> one, two = Tokenizer(models.BPE()), Tokenizer(models.BPE())
    >>> one.add_special_tokens(["<a>", "<b>"]), two.add_special_tokens(["<b>", "<a>"])
    (2, 2)
    >>> first = tokenizer_fingerprint(one)
    >>> first == tokenizer_fingerprint(one), first == tokenizer_fingerprint(two)
    (True, False)
    """
    model = json.loads(tokenizer.to_str())["model"]
    vocab = model.get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [piece, score] pairs, the id is the position
        vocab = {piece: i for i, (piece, _score) in enumerate(vocab)}
    merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model.get("merges") or []]
    added = sorted(
        (i, token.content, bool(token.special))
        for i, token in tokenizer.get_added_tokens_decoder().items()
    )
    return fingerprint(
        {"type": model.get("type"), "vocab": vocab, "merges": merges, "added": added}
    )


def model_context_length(folder: str | Path | None) -> int | None:
    """The context length a model folder's config.json states (max_position_embeddings, else
    n_positions), or None when the folder is not a model folder."""
    if folder is None or not (Path(folder) / "config.json").is_file():
        return None
    config = read_json_object(Path(folder) / "config.json")
    for key in ("max_position_embeddings", "n_positions"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
