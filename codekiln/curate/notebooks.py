"""Jupyter notebooks in StarCoder's formats.

Everything here is a pure function of its input: a conversion into the text StarCoder
trained on. Notebooks (nbformat 4 JSON) become two texts, as in StarCoderData's
``jupyter-scripts`` and ``jupyter-structured`` subsets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from codekiln.curate.languages import LANGUAGES

JUPYTER_START = "<jupyter_start>"
JUPYTER_TEXT = "<jupyter_text>"
JUPYTER_CODE = "<jupyter_code>"
JUPYTER_OUTPUT = "<jupyter_output>"
EMPTY_OUTPUT = "<empty_output>"

# Kernel language names (lower case, version digits removed) that differ from Linguist's.
_KERNEL_LANGUAGES = {
    "python": "Python",
    "ipython": "Python",
    "pyspark": "Python",
    "sage": "Python",
    "ir": "R",
    "javascript": "JavaScript",
    "node": "JavaScript",
    "nodejs": "JavaScript",
    "typescript": "TypeScript",
    "c++": "C++",
    "cpp": "C++",
    "csharp": "C#",
    ".net-csharp": "C#",
    "fsharp": "F#",
    ".net-fsharp": "F#",
    "golang": "Go",
    "bash": "Shell",
    "sh": "Shell",
    "zsh": "Shell",
    "matlab": "MATLAB",
    "octave": "MATLAB",
    "wolfram language": "Mathematica",
    "spylon-kernel": "Scala",
}
_LINGUIST_BY_LOWER = {name.lower(): name for name in LANGUAGES}
_VERSION_SUFFIX = re.compile(r"[\d._-]+$")

# How a markdown cell becomes a comment: a line prefix, or a (start, end) pair around the cell.
_LINE_COMMENTS = {
    **dict.fromkeys(
        "C C++ C# F# Java JavaScript TypeScript Scala Kotlin Go Rust Swift Groovy Dart PHP "
        "Stata".split(),
        "//",
    ),
    **dict.fromkeys(["Haskell", "Lua", "SQL", "Elm"], "--"),
    **dict.fromkeys(["MATLAB", "Erlang", "TeX", "Prolog"], "%"),
    **dict.fromkeys(["Clojure", "Common Lisp", "Scheme", "Racket", "Emacs Lisp"], ";"),
}
_BLOCK_COMMENTS = {"OCaml": ("(*", "*)"), "Mathematica": ("(*", "*)"), "SAS": ("/*", "*/")}

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def parse_notebook(raw: str) -> dict:
    """Parse an .ipynb file's text; ValueError with a short reason when it is not a notebook.

    >>> len(parse_notebook('{"cells": [], "metadata": {}}')["cells"])
    0
    >>> parse_notebook('{"worksheets": []}')
    Traceback (most recent call last):
    ...
    ValueError: not a notebook: no 'cells' list (nbformat 3 and older are not supported)
    """
    try:
        nb = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(nb, dict):
        kind = {list: "array", str: "string", bool: "boolean"}.get(type(nb), "number or null")
        raise ValueError(f"not a notebook: the top level is a JSON {kind}, not an object")
    if not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook: no 'cells' list (nbformat 3 and older are not supported)")
    for index, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise ValueError(f"not a notebook: cell {index} has no 'cell_type'")
    return nb


def notebook_language(nb: dict) -> str:
    """The notebook's language as a Linguist name, from its kernel metadata; "Python" if unknown.

    ``metadata.kernelspec.language`` wins over ``metadata.language_info.name``, which wins
    over ``metadata.kernelspec.name`` (``python3``, ``ir``, ``julia-1.9``). A name Linguist does
    not know is returned as written.

    >>> notebook_language({"metadata": {"kernelspec": {"name": "ir", "language": "R"}}})
    'R'
    >>> notebook_language({"metadata": {"language_info": {"name": "julia"}}})
    'Julia'
    >>> notebook_language({"cells": []})
    'Python'
    """
    meta = nb.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    kernel = meta.get("kernelspec") if isinstance(meta.get("kernelspec"), dict) else {}
    info = meta.get("language_info") if isinstance(meta.get("language_info"), dict) else {}
    for value in (kernel.get("language"), info.get("name"), kernel.get("name")):
        if isinstance(value, str) and value.strip():
            return _linguist_name(value.strip())
    return "Python"


def _linguist_name(name: str) -> str:
    lower = name.lower()
    for key in (lower, _VERSION_SUFFIX.sub("", lower)):
        if key in _KERNEL_LANGUAGES:
            return _KERNEL_LANGUAGES[key]
        if key in _LINGUIST_BY_LOWER:
            return _LINGUIST_BY_LOWER[key]
    return name


def _joined(value: Any) -> str:
    """nbformat stores multi-line strings either whole or as a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part for part in value if isinstance(part, str))
    return ""


def _trim(text: str) -> str:
    """Unix newlines, no leading or trailing blank lines, no trailing spaces on the last line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines).rstrip()


def _cells(nb: dict) -> Iterator[tuple[str, str, dict]]:
    """(cell_type, trimmed source, cell) for every cell with a non-blank source."""
    cells = nb.get("cells")
    for cell in cells if isinstance(cells, list) else ():
        if isinstance(cell, dict):
            source = _trim(_joined(cell.get("source")))
            if source:
                yield str(cell.get("cell_type")), source, cell


def _as_comment(text: str, language: str) -> str:
    if language in _BLOCK_COMMENTS:
        start, end = _BLOCK_COMMENTS[language]
        # An end marker inside the text would close the comment early.
        return f"{start} {text.replace(end, end[0] + ' ' + end[1:])} {end}"
    mark = _LINE_COMMENTS.get(language, "#")
    return "\n".join(
        f"{mark} {line}".rstrip() if line.strip() else mark for line in text.split("\n")
    )


def _python_script_line(line: str) -> str:
    # IPython magic lines (%matplotlib, %%time) and shell escapes (!pip) are not Python:
    # comment them out, as Jupytext does, so the script parses.
    return "# " + line if line.lstrip().startswith(("%", "!")) else line


def notebook_script(nb: dict) -> str | None:
    """The notebook as one script: code cells as they are, markdown cells as comments.

    Cells keep their order and are separated by one blank line; the script ends with a
    newline. Sources are trimmed of leading and trailing blank lines. Markdown lines get the
    language's comment marker (``#`` for Python, R, Julia and unknown languages, ``//`` for
    Scala, JavaScript, ...; empty lines get the bare marker). In Python notebooks, magic
    (``%``) and shell (``!``) lines are commented out. Raw cells are dropped. None when no
    code cell has any code.

    >>> nb = {"cells": [{"cell_type": "markdown", "source": ["# Sum\\n", "Adds."]},
    ...                 {"cell_type": "code", "source": "print(1 + 1)\\n"}]}
    >>> notebook_script(nb)
    '# # Sum\\n# Adds.\\n\\nprint(1 + 1)\\n'
    """
    language = notebook_language(nb)
    blocks = []
    has_code = False
    for kind, source, _cell in _cells(nb):
        if kind == "code":
            has_code = True
            if language == "Python":
                source = "\n".join(map(_python_script_line, source.split("\n")))
            blocks.append(source)
        elif kind == "markdown":
            blocks.append(_as_comment(source, language))
    return "\n\n".join(blocks) + "\n" if has_code else None


def cell_output(cell: dict, max_chars: int = 1000) -> str:
    """A code cell's text output, cut to its first `max_chars` characters; "" when there is none.

    Consecutive stream outputs are concatenated as written; each other output contributes its
    ``text/plain`` (execute_result, display_data) or ``ename: evalue`` (error, without the
    traceback). Pieces are joined by one newline after dropping their trailing newlines;
    images, HTML and ANSI colour codes are dropped; trailing whitespace is removed before
    the cut.

    >>> cell_output({"outputs": [{"output_type": "stream", "text": ["a\\n", "b\\n"]},
    ...                          {"output_type": "execute_result", "data": {"text/plain": "2"}}]})
    'a\\nb\\n2'
    """
    outputs = cell.get("outputs")
    pieces: list[str] = []
    last_stream = False
    for output in outputs if isinstance(outputs, list) else ():
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            text = _joined(output.get("text"))
            if last_stream:
                pieces[-1] += text
            else:
                pieces.append(text)
            last_stream = True
            continue
        last_stream = False
        if kind in ("execute_result", "display_data"):
            data = output.get("data")
            text = _joined(data.get("text/plain")) if isinstance(data, dict) else ""
            if text:
                pieces.append(text)
        elif kind == "error":
            pieces.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    text = "\n".join(piece.rstrip("\n") for piece in pieces)
    text = _ANSI_ESCAPE.sub("", text.replace("\r\n", "\n")).rstrip()
    return text[:max_chars]


def notebook_structured(nb: dict, max_output_chars: int = 1000) -> str | None:
    """The notebook in StarCoder's structured form, cell by cell.

    ``<jupyter_start>``, then for each cell in order: ``<jupyter_text>`` + markdown source, or
    ``<jupyter_code>`` + code source + ``<jupyter_output>`` + its text output (see
    `cell_output`, cut to the first `max_output_chars` characters) or ``<empty_output>``. No
    newlines are added between parts; sources are trimmed as in `notebook_script`; raw and
    blank cells are dropped. None when no code cell has any code.

    >>> notebook_structured({"cells": [{"cell_type": "markdown", "source": "Sum"},
    ...                                {"cell_type": "code", "source": "1 + 1", "outputs": []}]})
    '<jupyter_start><jupyter_text>Sum<jupyter_code>1 + 1<jupyter_output><empty_output>'
    """
    if max_output_chars < 0:
        raise ValueError(f"max_output_chars must be >= 0, got {max_output_chars}")
    parts = [JUPYTER_START]
    has_code = False
    for kind, source, cell in _cells(nb):
        if kind == "code":
            has_code = True
            output = cell_output(cell, max_output_chars) or EMPTY_OUTPUT
            parts.append(f"{JUPYTER_CODE}{source}{JUPYTER_OUTPUT}{output}")
        elif kind == "markdown":
            parts.append(f"{JUPYTER_TEXT}{source}")
    return "".join(parts) if has_code else None
