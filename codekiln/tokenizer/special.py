"""StarCoder's special tokens, and loading a tokenizer folder that has them."""

from __future__ import annotations

from pathlib import Path

from codekiln.errors import UserError

EOS = "<|endoftext|>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
FIM_PAD = "<fim_pad>"
FILENAME = "<filename>"
GH_STARS = "<gh_stars>"
REPONAME = "<reponame>"

# Ids 0-18, in this order, exactly as StarCoder's tokenizer has them.
SPECIAL_TOKENS = (
    EOS,
    FIM_PREFIX,
    FIM_MIDDLE,
    FIM_SUFFIX,
    FIM_PAD,
    FILENAME,
    GH_STARS,
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    REPONAME,
)

# What packing and Fill-in-the-Middle need from a tokenizer that came from elsewhere.
REQUIRED = (EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILENAME, GH_STARS, REPONAME)


def load_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a folder (or a tokenizer.json) that has the tokens
    packing and FIM need; a UserError names what is missing and how to fix it."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise UserError(
            f"no tokenizer at {path}: give a folder with tokenizer.json "
            "(train one with `codekiln tokenizer train`)"
        )
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exceptions
        raise UserError(f"{file} is not a readable tokenizer.json ({exc})") from None
    missing = [t for t in REQUIRED if tokenizer.token_to_id(t) is None]
    if missing:
        raise UserError(
            f"tokenizer {path} lacks {', '.join(missing)}: train one with "
            "`codekiln tokenizer train`, or add StarCoder's special tokens to it"
        )
    return tokenizer


def special_ids(tokenizer) -> dict[str, int]:
    """Token -> id for every special token the tokenizer has."""
    ids = {}
    for token in SPECIAL_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            ids[token] = token_id
    return ids
