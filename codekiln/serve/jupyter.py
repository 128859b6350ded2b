"""An IPython extension: Tab in a notebook or IPython offers the model's completion.

    %load_ext codekiln.serve.jupyter
    %codekiln_model http://127.0.0.1:8000      # or a model folder; or set CODEKILN_MODEL

The extension adds a matcher (IPython's Matcher API v2) next to IPython's own: it sends the
whole cell, split at the cursor, through the same `Completer` the language server uses
(prefix and suffix within the context budget, fill-in-the-middle, one line when code follows
the cursor). The completion comes back as one more entry in the Tab list, `type` "codekiln",
that replaces the word being typed with that word followed by the model's text. Works in
JupyterLab, Notebook and the terminal, since all of them ask the kernel for completions.

The model loads on first use, not when the extension loads, so `%load_ext` stays fast.
"""

from __future__ import annotations

import os
from typing import Any

from codekiln.serve.config import LspConfig

ENV_MODEL = "CODEKILN_MODEL"
ENV_API_KEY = "CODEKILN_API_KEY"


class NotebookCompleter:
    """Holds the model spec and builds the `Completer` on first use."""

    def __init__(self, spec: str | None = None, completer: Any = None) -> None:
        self.spec = spec
        self._completer = completer

    def set_model(self, spec: str) -> None:
        self.spec, self._completer = spec.strip(), None

    def completer(self) -> Any:
        if self._completer is None:
            from codekiln.errors import UserError
            from codekiln.generate import load_backend
            from codekiln.serve.lsp import Completer

            if not self.spec:
                raise UserError(f"no model: run %codekiln_model FOLDER_OR_URL, or set {ENV_MODEL}")
            options = {}
            if self.spec.startswith(("http://", "https://")):
                options["api_key"] = os.environ.get(ENV_API_KEY)
            self._completer = Completer(load_backend(self.spec, **options), LspConfig())
        return self._completer

    def complete_cell(self, cell: str, line: int, column: int) -> str:
        """The completion at (line, column) of the cell ('' when there is none)."""
        lines = cell.split("\n")
        offset = sum(len(text) + 1 for text in lines[:line]) + column
        return self.completer().complete(cell, offset) or ""


def matcher_for(notebook: NotebookCompleter) -> Any:
    from IPython.core.completer import SimpleCompletion, context_matcher

    @context_matcher()
    def codekiln_matcher(context: Any) -> dict[str, Any]:
        text = notebook.complete_cell(
            context.full_text, context.cursor_line, context.cursor_position
        )
        if not text.strip():
            return {"completions": [], "suppress": False}
        completion = SimpleCompletion(text=context.token + text, type="codekiln")
        return {"completions": [completion], "matched_fragment": context.token}

    return codekiln_matcher


def register(ipython: Any, notebook: NotebookCompleter) -> None:
    """Add the matcher and the `%codekiln_model` magic to an IPython shell."""
    matcher = matcher_for(notebook)
    ipython.Completer.custom_matchers.append(matcher)
    ipython.register_magic_function(
        lambda line: notebook.set_model(line), magic_kind="line", magic_name="codekiln_model"
    )
    ipython.user_ns.setdefault("_codekiln_matcher", matcher)


def load_ipython_extension(ipython: Any) -> None:
    register(ipython, NotebookCompleter(os.environ.get(ENV_MODEL)))


def unload_ipython_extension(ipython: Any) -> None:
    matcher = ipython.user_ns.pop("_codekiln_matcher", None)
    if matcher in ipython.Completer.custom_matchers:
        ipython.Completer.custom_matchers.remove(matcher)
