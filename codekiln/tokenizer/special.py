"""StarCoder's and StarCoder2's special tokens, and loading a tokenizer folder that has
StarCoder's (codekiln's own tokenizer stage; packing takes any tokenizer, see family.py)."""

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
REPO_NAME = "<repo_name>"  # StarCoder2's <reponame>
FILE_SEP = "<file_sep>"  # StarCoder2: starts each file of a repository-level document

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

# StarCoder2's tokenizer (bigcode/starcoder2-15b), ids 0-37 in this order. It has no
# <filename> or <gh_stars>: a document is a whole repository, each file after <file_sep>.
STARCODER2_SPECIAL_TOKENS = (
    EOS,
    FIM_PREFIX,
    FIM_MIDDLE,
    FIM_SUFFIX,
    FIM_PAD,
    REPO_NAME,
    FILE_SEP,
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<jupyter_script>",
    "<empty_output>",
    "<code_to_intermediate>",
    "<intermediate_to_code>",
    "<pr>",
    "<pr_status>",
    "<pr_is_merged>",
    "<pr_base>",
    "<pr_file>",
    "<pr_base_code>",
    "<pr_diff>",
    "<pr_diff_hunk>",
    "<pr_comment>",
    "<pr_event_id>",
    "<pr_review>",
    "<pr_review_state>",
    "<pr_review_comment>",
    "<pr_in_reply_to_review_id>",
    "<pr_in_reply_to_comment_id>",
    "<pr_diff_hunk_comment_line>",
    "<NAME>",
    "<EMAIL>",
    "<KEY>",
    "<PASSWORD>",
)

# What `load_tokenizer` asks of a StarCoder-family tokenizer that came from elsewhere.
REQUIRED = (EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILENAME, GH_STARS, REPONAME)


def load_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a folder (or a tokenizer.json) that has StarCoder's
    metadata and FIM tokens; a UserError names what is missing and how to fix it. Packing and
    the loader take any tokenizer (`codekiln.tokenizer.family.load_any_tokenizer`)."""
    from codekiln.tokenizer.family import load_any_tokenizer

    tokenizer = load_any_tokenizer(path)
    missing = [t for t in REQUIRED if tokenizer.token_to_id(t) is None]
    if missing:
        raise UserError(
            f"tokenizer {path} lacks {', '.join(missing)}: train one with "
            "`codekiln tokenizer train`, or add StarCoder's special tokens to it"
        )
    return tokenizer


def special_ids(tokenizer) -> dict[str, int]:
    """Token -> id for every one of StarCoder's special tokens the tokenizer has (for any
    family's: `codekiln.tokenizer.family.special_token_ids`)."""
    ids = {}
    for token in SPECIAL_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            ids[token] = token_id
    return ids
