"""MultiPL-E's HumanEval in other languages: one ``multiple-<lang>`` task per language.

StarCoder's multilingual claim was measured with MultiPL-E (Cassano et al. 2022): the
HumanEval problems translated into many languages by a compiler from Python's prompts and
tests. The tasks run MultiPL-E's rows (the user's files, the pinned dataset, or our own
translator's, which reproduce them) as MultiPL-E's evaluators run them:

- :mod:`.official` reads the rows and says where they came from;
- :mod:`.runners` is how each language is compiled, run and judged;
- :mod:`.translate` writes MultiPL-E's rows from MultiPL-E's copies of the problems
  (:mod:`.cleaned`), reworded with its table of terms (:mod:`.terms`), in one of three versions
  (:mod:`.versions`);
- :mod:`.base` is what a language provides and :mod:`.languages` the table of them;
  :mod:`.js`, :mod:`.cpp`, :mod:`.java`, :mod:`.rust`, :mod:`.go`, :mod:`.scripting` (PHP,
  Ruby, Lua, Perl) and :mod:`.bash` are the languages;
- :mod:`.task` makes each language a task of the evaluation harness.

The harness finds the tasks in ``codekiln.evaluate.tasks.TASKS``. Importing this package
reads nothing; a task reads or translates its rows the first time its problems are asked for.
"""

from codekiln.evaluate.multiple.languages import LANGUAGES, language
from codekiln.evaluate.multiple.runners import RUNNERS, Runner, runner
from codekiln.evaluate.multiple.task import MultipleTask, translation_report

__all__ = [
    "LANGUAGES",
    "RUNNERS",
    "MultipleTask",
    "Runner",
    "language",
    "runner",
    "translation_report",
]
