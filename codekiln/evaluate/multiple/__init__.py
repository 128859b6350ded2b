"""MultiPL-E-style HumanEval in other languages: one ``multiple-<lang>`` task per language.

StarCoder's multilingual claim was measured with MultiPL-E (Cassano et al. 2022): the
HumanEval problems translated into many languages by a compiler from Python's prompts and
tests. This subpackage is our own such translator and its tasks:

- :mod:`.infer` types Python values and annotations (``list[int]``, ``optional[str]``...);
- :mod:`.translate` reads a problem (signature, docstring, the ``assert candidate(...) ==
  value`` lines) into a language-neutral ``Spec`` and renders it through a ``Language``;
- :mod:`.base` is what a language provides; :mod:`.js`, :mod:`.cpp`, :mod:`.java`,
  :mod:`.rust`, :mod:`.go`, :mod:`.scripting` (PHP, Ruby, Lua, Perl) and :mod:`.bash`
  are the languages;
- :mod:`.task` makes each language a task of the evaluation harness.

Importing this package registers every task and translates nothing; a task translates all
164 problems the first time its problems are asked for (a fraction of a second).
"""

from codekiln.evaluate.multiple.task import (
    LANGUAGES,
    MultipleTask,
    language,
    translation_report,
    translations,
)

__all__ = ["LANGUAGES", "MultipleTask", "language", "translation_report", "translations"]
