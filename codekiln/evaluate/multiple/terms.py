"""MultiPL-E's rewording of Python's vocabulary in a docstring ("reworded" prompts).

MultiPL-E's table (``dataset_builder/terms.csv`` as of the commit that built the dataset's
rows, nuprl/MultiPL-E 7bc20f2) names, per language, the
word that replaces each Python term in the prose of a docstring: "list" becomes "array" in
JavaScript, "None" becomes "nil" in Ruby. These are facts of the benchmark; the rows below are
the table's, for the languages we translate to.

The replacement is plain substring replacement, term by term in the table's column order,
with one grammar fix: "an list" / "a array" get the article the new word needs. It applies
to the prose only; doctest examples are translated separately. Being substring replacement,
it also rewrites words that contain a term ("happy" holds "py"), as MultiPL-E's rows do.
"""

from __future__ import annotations

import re

FIELDS = ("Python", "py", "array", "list", "tuple", "dictionary", "None", "True", "False")

# The table's row per language, in FIELDS' order ("Q" would mean: leave the term as it is).
TERMS: dict[str, tuple[str, ...]] = {
    "py": ("Python", "py", "array", "list", "tuple", "dictionary", "None", "True", "False"),
    "sh": ("Bash", "sh", "array", "list", "list", "CSV", "None", "true", "false"),
    "cpp": ("C++", "cpp", "vector", "vector", "tuple", "map", "None", "true", "false"),
    "go": ("Go", "go", "list", "list", "list", "map", "nil", "true", "false"),
    "java": (
        "Java",
        "java",
        "array list",
        "array list",
        "pair",
        "hash map",
        "null",
        "true",
        "false",
    ),
    "js": ("JavaScript", "js", "array", "array", "array", "object", "undefined", "true", "false"),
    "lua": ("Lua", "lua", "table", "table", "table", "table", "nil", "true", "false"),
    "pl": ("Perl", "pl", "array", "array", "array", "hash", "undef", "1", "''"),
    "php": ("PHP", "php", "array", "array", "array", "array", "null", "true", "false"),
    "rb": ("Ruby", "rb", "array", "array", "array", "hash", "nil", "true", "false"),
    "rs": ("Rust", "rs", "vector", "vector", "tuple", "HashMap", "None", "true", "false"),
    "ts": ("TypeScript", "ts", "array", "array", "array", "object", "undefined", "true", "false"),
}

# The table before 2023-09-11 (MultiPL-E d6a03fb "None -> nil"): the 2.1.0 and 2023-09 rows.
TERMS_2023_09 = {
    **TERMS,
    "lua": ("Lua", "lua", "table", "table", "table", "table", "None", "true", "false"),
}

# A doctest example: the ``>>>`` line and the line after it (its result).
DOCTEST = re.compile(r">>>.*\n.*\n")

_VOWELS = "aeiou"


def reword_terms(text: str, key: str, terms: dict[str, tuple[str, ...]] = TERMS) -> str:
    """`text` with the Python terms replaced by language `key`'s (in the table `terms`).

    >>> reword_terms("Return a list of tuples, or None.", "rb")
    'Return an array of arrays, or nil.'
    """
    for field, term in zip(FIELDS, terms[key], strict=True):
        if field not in text or term == "Q":
            continue
        if "an " + field in text and term[0].lower() not in _VOWELS:
            text = text.replace("an " + field, "a " + term)
        elif "a " + field in text and term[0].lower() in _VOWELS:
            text = text.replace("a " + field, "an " + term)
        text = text.replace(field, term)
    return text


def reword(docstring: str, key: str, terms: dict[str, tuple[str, ...]] = TERMS) -> str:
    """The docstring reworded for language `key`, its doctest examples left as they are.

    >>> reword("Take a list:\\n>>> f([1])\\n[1]\\n", "js")
    'Take an array:\\n>>> f([1])\\n[1]\\n'
    """
    out, last = [], 0
    for match in DOCTEST.finditer(docstring):
        out.append(reword_terms(docstring[last : match.start()], key, terms))
        out.append(match.group())
        last = match.end()
    out.append(reword_terms(docstring[last:], key, terms))
    return "".join(out)
