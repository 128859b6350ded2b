"""What a packed document is, for each tokenizer family: pure functions, no I/O.

StarCoder's layout (`starcoder`) makes every curated record one document:

    [<reponame>REPO][<filename>PATH][<gh_stars>BUCKET]["\\n" if any of them]CONTENT<|endoftext|>

Each metadata field is kept on its own with `metadata_probability`, drawn from a hash of
(seed, record id), so a record's document depends neither on the number of workers nor on the
order records are read in. `plain` is CONTENT<eos>. StarCoder2's (`starcoder2`) makes every
repository one document, its files in a seeded random order (see `repository_documents`):

    <repo_name>REPO<file_sep>PATH\\nCODE<file_sep>PATH\\nCODE...<|endoftext|>   (with metadata)
    <file_sep>CODE<file_sep>CODE...<|endoftext|>                             (without)

with some files in Fill-in-the-Middle form, and a repository longer than `context_length`
tokens split at file boundaries.

A record goes to `valid` or `train` by a seeded hash of its repository, so no repository is in
both. Every draw here comes from SHA-256 of the seed and a record's or repository's name
(`_uniforms`), never from a process-seeded RNG: the same on every machine and for any number
of workers. `Layout` is the layout one pack uses (pack.py's `resolve_layout` picks it from
the tokenizer and PackConfig); pack.py encodes the (special token, text) pairs these
functions return.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from codekiln.pack.fim import fim_cut_points
from codekiln.tokenizer.family import DocumentFormat, FimTokens
from codekiln.tokenizer.special import (
    EOS,
    FILE_SEP,
    FILENAME,
    GH_STARS,
    REPO_NAME,
    REPONAME,
)


@dataclass(frozen=True)
class Layout:
    """How documents are laid out for one tokenizer and config: what meta.json's `format`
    records. `fim` is "context" (the loader does FIM while training), "file" (pack did it,
    StarCoder2) or "none" (no FIM tokens); `fim_rate` is pack's own share of FIM files."""

    format: DocumentFormat
    fim: str
    fim_rate: float
    repo_metadata_probability: float | None
    context_length: int | None

    def to_dict(self) -> dict[str, Any]:
        tokens = self.format.fim
        return {
            "family": self.format.family,
            "eos": self.format.eos,
            "fim": self.fim,
            "fim_tokens": tokens.to_dict() if tokens is not None else None,
            "fim_rate": self.fim_rate,
            "repo_metadata_probability": self.repo_metadata_probability,
            "context_length": self.context_length,
        }


def star_bucket(stars: int | None) -> str:
    """The text after <gh_stars>: a repository's star count in StarCoder's buckets.

    None or less than 1 -> "0"; 1-9 -> "1-10"; 10-99 -> "10-100"; 100-999 -> "100-1000";
    1000 or more -> "1000+". Each bucket includes its lower bound and excludes its upper one.

    >>> [star_bucket(s) for s in (None, 0, 1, 9, 10, 99, 100, 999, 1000)]
    ['0', '0', '1-10', '1-10', '10-100', '10-100', '100-1000', '100-1000', '1000+']
    """
    if stars is None or stars < 1:
        return "0"
    if stars < 10:
        return "1-10"
    if stars < 100:
        return "10-100"
    if stars < 1000:
        return "100-1000"
    return "1000+"


def _uniforms(key: str, count: int) -> list[float]:
    """`count` (at most 4) numbers in [0, 1) from SHA-256 of `key`, 64 bits each: the same on
    every machine and Python version, unlike hash() or a process-seeded RNG."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return [int.from_bytes(digest[8 * i : 8 * i + 8], "big") / 2**64 for i in range(count)]


def repo_hash(repo: str, seed: int) -> float:
    """The repository's place in [0, 1) that decides its split.

    >>> round(repo_hash("octo/demo", 42), 6)
    0.260829
    """
    return _uniforms(f"split\0{seed}\0{repo}", 1)[0]


def split_of(repo: str, seed: int, valid_fraction: float) -> str:
    """A repository's split: "valid" when its seeded hash is below `valid_fraction`.

    >>> split_of("octo/demo", 42, 0.01), split_of("octo/demo", 42, 0.5)
    ('train', 'valid')
    """
    return "valid" if repo_hash(repo, seed) < valid_fraction else "train"


def valid_repositories(repos: Iterable[str], seed: int, valid_fraction: float) -> set[str]:
    """The repositories of the validation split: those `split_of` puts there, with two fixes
    for small corpora. If it puts none of two or more repositories there, the one with the
    smallest hash goes (the first to enter as the fraction grows), so a tiny corpus still has a
    validation split; if it puts all of them there, the one with the largest hash stays in
    train. valid_fraction 0 means no validation split at all.

    >>> sorted(valid_repositories(["a", "b", "c"], 42, 0.01))  # none by hash: the smallest
    ['a']
    >>> valid_repositories(["a"], 42, 0.01), valid_repositories(["a", "b"], 42, 0.0)
    (set(), set())
    """
    if valid_fraction <= 0:
        return set()
    ranked = sorted((repo_hash(r, seed), r) for r in set(repos))
    valid = {r for h, r in ranked if h < valid_fraction}
    if not valid and len(ranked) >= 2:
        valid = {ranked[0][1]}
    if ranked and len(valid) == len(ranked):
        valid.discard(ranked[-1][1])
    return valid


def metadata_prefix(
    record: Mapping[str, Any], seed: int, probability: float
) -> list[tuple[str, str]]:
    """The (special token, text) fields that go before a record's content, in StarCoder's
    order. Each of <reponame>, <filename>, <gh_stars> is kept with `probability`, by its own
    64 bits of SHA-256 of (seed, record id): a record always gets the same prefix. A field
    whose value is missing (no repo or path) is left out.

    >>> record = {"id": "f00d", "repo": "octo/demo", "path": "src/app.py", "stars": 42}
    >>> metadata_prefix(record, seed=42, probability=1.0)
    [('<reponame>', 'octo/demo'), ('<filename>', 'src/app.py'), ('<gh_stars>', '10-100')]
    >>> metadata_prefix(record, seed=42, probability=0.0)
    []
    """
    draws = _uniforms(f"meta\0{seed}\0{record.get('id') or ''}", 3)
    values = (record.get("repo"), record.get("path"), star_bucket(record.get("stars")))
    return [
        (token, value)
        for token, value, draw in zip((REPONAME, FILENAME, GH_STARS), values, draws, strict=True)
        if value and draw < probability
    ]


def document_text(record: Mapping[str, Any], seed: int, probability: float) -> str:
    """The text a record's document decodes to (special tokens kept).

    >>> record = {"id": "f00d", "repo": "octo/demo", "path": "a.py", "stars": 0, "content": "x"}
    >>> document_text(record, 42, 1.0)
    '<reponame>octo/demo<filename>a.py<gh_stars>0\\nx<|endoftext|>'
    """
    fields = metadata_prefix(record, seed, probability)
    prefix = "".join(token + text for token, text in fields) + ("\n" if fields else "")
    return prefix + (record.get("content") or "") + EOS


def repository_has_metadata(repo: str, seed: int, probability: float) -> bool:
    """Whether a StarCoder2 repository document carries <repo_name> and the paths: drawn with
    `probability` from a hash of (seed, repository), so every split piece of it agrees. A
    record without a repository never does.

    >>> repository_has_metadata("octo/demo", 42, 1.0), repository_has_metadata("", 42, 1.0)
    (True, False)
    """
    return bool(repo) and _uniforms(f"repo-meta\0{seed}\0{repo}", 1)[0] < probability


def repository_order(file_ids: list[str | None], repo: str, seed: int) -> list[int]:
    """The order of a repository's files in its document, as positions into `file_ids`: by
    a seeded hash of (repository, file id), so the order is random but depends neither on
    the order the files were read in nor on the workers. Equal ids keep their input order.

    >>> repository_order(["1", "2", "3", "4"], "octo/demo", 42)
    [2, 1, 0, 3]
    """
    keys = [_uniforms(f"order\0{seed}\0{repo}\0{i or ''}", 1)[0] for i in file_ids]
    return sorted(range(len(file_ids)), key=lambda k: (keys[k], k))


def file_fim_cuts(file_id: str | None, length: int, seed: int, rate: float):
    """The two cut points (characters) of a file put in FIM form while packing, or None for a
    file left as it is. The file is drawn with `rate` from a hash of (seed, file id); the cut
    points are `fim.fim_cut_points` (uniform over 0..length) from an rng seeded the same way.

    >>> file_fim_cuts("beef", 10, 42, 1.0), file_fim_cuts("beef", 10, 42, 0.0)
    ((1, 9), None)
    """
    if not _uniforms(f"fim\0{seed}\0{file_id or ''}", 1)[0] < rate:
        return None
    digest = hashlib.sha256(f"fim-cuts\0{seed}\0{file_id or ''}".encode("utf-8", "surrogatepass"))
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:16], "big"))
    return fim_cut_points(length, rng)


def file_fields(
    path: str, content: str, metadata: bool, cuts: tuple[int, int] | None, fim: FimTokens | None
) -> list[tuple[str, str]]:
    """One file of a StarCoder2 repository document as (special token, text) pairs: each
    special token is followed by its text. With metadata the path and a newline come first;
    a file with cut points is in FIM form (PSM), the path going with the prefix.

    >>> fim = FimTokens("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>")
    >>> file_fields("a.py", "x = 1\\n", True, None, fim)
    [('<file_sep>', 'a.py\\nx = 1\\n')]
    >>> file_fields("a.py", "x = 1\\n", False, (2, 4), fim)
    [('<file_sep>', ''), ('<fim_prefix>', 'x '), ('<fim_suffix>', '1\\n'), ('<fim_middle>', '= ')]
    """
    head = f"{path}\n" if metadata else ""
    if cuts is None:
        return [(FILE_SEP, head + content)]
    assert fim is not None, "cut points without FIM tokens"
    lo, hi = cuts
    return [
        (FILE_SEP, ""),
        (fim.prefix, head + content[:lo]),
        (fim.suffix, content[hi:]),
        (fim.middle, content[lo:hi]),
    ]


def repository_fields(
    repo: str, records: list[Mapping[str, Any]], seed: int, layout: Layout
) -> tuple[list[tuple[str, str]], list[tuple[int, list[tuple[str, str]]]]]:
    """A StarCoder2 repository document before encoding: the header's (special token, text)
    pairs (<repo_name> and the name, where the repository has metadata) and, in document
    order, (position in `records`, the file's pairs). Each record needs id, path, content.

    >>> layout = Layout(DocumentFormat("starcoder2", EOS, None), "none", 0.0, 1.0, 4096)
    >>> files = [{"id": i, "path": f"{i}.py", "content": i * 2} for i in "12"]
    >>> header, ordered = repository_fields("octo/demo", files, 42, layout)
    >>> header
    [('<repo_name>', 'octo/demo')]
    >>> ordered
    [(1, [('<file_sep>', '2.py\\n22')]), (0, [('<file_sep>', '1.py\\n11')])]
    """
    metadata = repository_has_metadata(repo, seed, layout.repo_metadata_probability or 0.0)
    header = [(REPO_NAME, repo)] if metadata else []
    fim = layout.format.fim
    files = []
    for position in repository_order([r.get("id") for r in records], repo, seed):
        record = records[position]
        content = record.get("content") or ""
        cuts = file_fim_cuts(record.get("id"), len(content), seed, layout.fim_rate)
        path = record.get("path") or ""
        files.append((position, file_fields(path, content, metadata, cuts, fim)))
    return header, files


def repository_documents(file_tokens: list[int], header: int, context_length: int) -> list:
    """A repository's files (their token counts, in document order) grouped into documents
    of at most `context_length` tokens, each the header, its files and the eos: greedily, in
    order, splitting only between files; a file too long for a document with no other file
    is a document of its own.

    >>> repository_documents([3, 4, 5, 20], header=2, context_length=12)
    [[0, 1], [2], [3]]
    """
    documents: list[list[int]] = [[]]
    size = header + 1
    for k, tokens in enumerate(file_tokens):
        if documents[-1] and size + tokens > context_length:
            documents.append([])
            size = header + 1
        documents[-1].append(k)
        size += tokens
    return documents
