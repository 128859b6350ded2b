"""Published pass@1 of reference code models, for the leaderboard's `--with-published` rows.

Each entry is one number as its source printed it (as a fraction), on one of codekiln's task
names, with what exactly was measured, how the samples were drawn where the source says so,
and the citation. A cell that could not be traced to a paper, a model card or a leaderboard's
data file is left out, never estimated: the table is short on purpose.

MultiPL-E numbers are what `multiple-<lang>` measures: MultiPL-E's HumanEval-<lang> rows
(161 or fewer problems per language). `humaneval` is OpenAI's 164-problem HumanEval.
`humaneval-plus` is EvalPlus's HumanEval+ (the same problems, more tests).

The infilling tasks have no entry. The FIM numbers printed for SantaCoder and StarCoder
are exact match on the SantaCoder-FIM benchmark (single-line holes in Python, Java and
JavaScript), not pass@1 on human-eval-infilling's single-line set that
`humaneval-infill-single` runs, so they do not belong in that column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Where numbers were printed: a paper (title and table) or a model card (its URL)."""

    key: str
    citation: str
    url: str


@dataclass(frozen=True)
class Published:
    """One published pass@1: `model` on codekiln's `task`."""

    model: str
    task: str
    pass_at_1: float
    metric: str
    sampling: str
    source: Source


# The source gives the number without its sampling settings; they are not guessed here.
NOT_RECORDED = "not recorded here; see the source"

# The StarCoder model card's model-index: HumanEval and MultiPL-HumanEval pass@1 per
# language, the numbers of the StarCoder paper's tables (arXiv 2305.06161).
STARCODER_CARD = Source(
    "starcoder-card",
    "StarCoder model card (model-index), numbers of 'StarCoder: may the source be with you!' "
    "(Li et al., 2023)",
    "https://huggingface.co/bigcode/starcoder",
)
# The StarCoder paper's HumanEval comparison table (StarCoderBase 30.4, StarCoder 33.6,
# SantaCoder 18.0, as Papers with Code lists the paper's results); the StarCoderBase model
# card's model-index (bigcode/starcoderbase-megatron) repeats 0.304, and an early BigCode
# leaderboard CSV (below) has 30.35 and 18.12 unrounded.
STARCODER_PAPER = Source(
    "starcoder-paper",
    "'StarCoder: may the source be with you!' (Li et al., 2023), HumanEval pass@1 table",
    "https://arxiv.org/abs/2305.06161",
)
# The SantaCoder model card's model-index: MultiPL-E HumanEval pass@1 in JavaScript and Java
# (from 'SantaCoder: don't reach for the stars!', arXiv 2301.03988).
SANTACODER_CARD = Source(
    "santacoder-card",
    "SantaCoder model card (model-index), numbers of 'SantaCoder: don't reach for the "
    "stars!' (Ben Allal et al., 2023)",
    "https://huggingface.co/bigcode/santacoder",
)
# The tiny_starcoder_py model card's model-index: HumanEval pass@1 7.84%.
TINY_STARCODER_CARD = Source(
    "tiny-starcoder-card",
    "tiny_starcoder_py model card (model-index)",
    "https://huggingface.co/bigcode/tiny_starcoder_py",
)
# The StarCoder2 paper's HumanEval / HumanEval+ numbers as each model card's model-index gives
# them (3B 31.7 / 27.4, 7B 35.4 / 29.9, 15B 46.3 / 37.8). The EvalPlus leaderboard
# (evalplus.github.io results.json) lists the same six numbers and ranks "by pass@1 using
# greedy decoding".
STARCODER2_PAPER = Source(
    "starcoder2-paper",
    "'StarCoder 2 and The Stack v2: The Next Generation' (Lozhkov et al., 2024), "
    "HumanEval and HumanEval+ table; model cards bigcode/starcoder2-3b, -7b, -15b",
    "https://arxiv.org/abs/2402.19173",
)
# The StarCoder2 paper's MultiPL-E results as released by its authors
# (bigcode/starcoder2-evaluation, MultiPL-E/passk.csv): MultiPL-E release "StarCoder2",
# reworded prompts, temperature 0.2; the file gives the number of completions per problem.
STARCODER2_MULTIPLE = Source(
    "starcoder2-multiple",
    "'StarCoder 2 and The Stack v2: The Next Generation' (Lozhkov et al., 2024), MultiPL-E "
    "table, as released in bigcode/starcoder2-evaluation MultiPL-E/passk.csv",
    "https://huggingface.co/datasets/bigcode/starcoder2-evaluation",
)
# The Code Llama paper's HumanEval table: pass@1 with greedy decoding (pass@10 and pass@100
# were sampled at temperature 0.8). A paper author confirms 33.5% for Code Llama 7B with greedy
# decoding and the unstripped HumanEval prompt (meta-llama/codellama issue 104).
CODE_LLAMA_PAPER = Source(
    "code-llama-paper",
    "'Code Llama: Open Foundation Models for Code' (Roziere et al., 2023), HumanEval / MBPP table",
    "https://arxiv.org/abs/2308.12950",
)

# An early data file of the BigCode Models Leaderboard. Its StarCoder row is the StarCoder
# model card's MultiPL-E numbers digit for digit and its StarCoderBase C++ (30.56) is the
# StarCoderBase(-megatron) card's 0.3056, so these are the StarCoder paper's MultiPL-E numbers
# as BigCode released them. The leaderboard states its setup for all models:
# bigcode-evaluation-harness, 50 samples per problem, temperature 0.2, top-p 0.95, 512 tokens.
BIGCODE_LEADERBOARD = Source(
    "bigcode-leaderboard",
    "BigCode Models Leaderboard (Hugging Face Space bigcode/bigcode-models-leaderboard), "
    "code_eval_board.csv at commit fb80349f",
    "https://huggingface.co/spaces/bigcode/bigcode-models-leaderboard/blob/"
    "fb80349f58f38204e0d047cc7f42c9dc961ef79b/code_eval_board.csv",
)

HUMANEVAL = "pass@1 on HumanEval (164 problems)"
HUMANEVAL_PLUS = "pass@1 on HumanEval+ (EvalPlus: the 164 problems with its extra tests)"
GREEDY = "greedy decoding (one completion per problem)"

# MultiPL-E language names as the sources print them, by codekiln task.
_LANGUAGES = {
    "multiple-cpp": "C++",
    "multiple-go": "Go",
    "multiple-java": "Java",
    "multiple-js": "JavaScript",
    "multiple-lua": "Lua",
    "multiple-php": "PHP",
    "multiple-pl": "Perl",
    "multiple-rb": "Ruby",
    "multiple-rs": "Rust",
    "multiple-sh": "Bash",
    "multiple-ts": "TypeScript",
}


def _multiple(task: str) -> str:
    return f"pass@1 on MultiPL-E HumanEval-{_LANGUAGES[task]}"


def _starcoder_multiple() -> list[Published]:
    scores = {
        "multiple-cpp": 0.3155,
        "multiple-go": 0.1761,
        "multiple-java": 0.3022,
        "multiple-js": 0.3079,
        "multiple-lua": 0.2389,
        "multiple-php": 0.2608,
        "multiple-pl": 0.1734,
        "multiple-rb": 0.0124,
        "multiple-rs": 0.2184,
        "multiple-sh": 0.1046,
        "multiple-ts": 0.3229,
    }
    return [
        Published("StarCoder", task, score, _multiple(task), NOT_RECORDED, STARCODER_CARD)
        for task, score in scores.items()
    ]


def _starcoderbase_multiple() -> list[Published]:
    # The leaderboard has no TypeScript, Go, Perl or Bash column: those cells stay empty.
    scores = {
        "multiple-cpp": 0.3056,
        "multiple-java": 0.2853,
        "multiple-js": 0.317,
        "multiple-lua": 0.2661,
        "multiple-php": 0.2675,
        "multiple-rb": 0.1725,
        "multiple-rs": 0.2446,
    }
    sampling = "50 samples per problem at temperature 0.2, top-p 0.95 (as the leaderboard states)"
    return [
        Published("StarCoderBase", task, score, _multiple(task), sampling, BIGCODE_LEADERBOARD)
        for task, score in scores.items()
    ]


def _starcoder2_multiple(model: str, score: float, completions: int) -> Published:
    sampling = f"{completions} completions per problem at temperature 0.2"
    return Published(
        model, "multiple-cpp", score, _multiple("multiple-cpp"), sampling, STARCODER2_MULTIPLE
    )


PUBLISHED: list[Published] = [
    Published("StarCoder", "humaneval", 0.336, HUMANEVAL, NOT_RECORDED, STARCODER_CARD),
    *_starcoder_multiple(),
    Published("StarCoderBase", "humaneval", 0.304, HUMANEVAL, NOT_RECORDED, STARCODER_PAPER),
    *_starcoderbase_multiple(),
    Published("SantaCoder", "humaneval", 0.18, HUMANEVAL, NOT_RECORDED, STARCODER_PAPER),
    Published(
        "SantaCoder", "multiple-js", 0.16, _multiple("multiple-js"), NOT_RECORDED, SANTACODER_CARD
    ),
    Published(
        "SantaCoder",
        "multiple-java",
        0.15,
        _multiple("multiple-java"),
        NOT_RECORDED,
        SANTACODER_CARD,
    ),
    Published(
        "tiny_starcoder_py", "humaneval", 0.0784, HUMANEVAL, NOT_RECORDED, TINY_STARCODER_CARD
    ),
    Published("StarCoder2-3B", "humaneval", 0.317, HUMANEVAL, GREEDY, STARCODER2_PAPER),
    Published("StarCoder2-3B", "humaneval-plus", 0.274, HUMANEVAL_PLUS, GREEDY, STARCODER2_PAPER),
    _starcoder2_multiple("StarCoder2-3B", 0.2724, 20),
    Published("StarCoder2-7B", "humaneval", 0.354, HUMANEVAL, GREEDY, STARCODER2_PAPER),
    Published("StarCoder2-7B", "humaneval-plus", 0.299, HUMANEVAL_PLUS, GREEDY, STARCODER2_PAPER),
    _starcoder2_multiple("StarCoder2-7B", 0.3363, 50),
    Published("StarCoder2-15B", "humaneval", 0.463, HUMANEVAL, GREEDY, STARCODER2_PAPER),
    Published("StarCoder2-15B", "humaneval-plus", 0.378, HUMANEVAL_PLUS, GREEDY, STARCODER2_PAPER),
    _starcoder2_multiple("StarCoder2-15B", 0.4144, 50),
    Published("Code Llama 7B", "humaneval", 0.335, HUMANEVAL, GREEDY, CODE_LLAMA_PAPER),
    # The StarCoder2 authors' MultiPL-E run of Code Llama 7B. The Code Llama paper's own
    # multilingual table (C++, Java, PHP, TS, C#, Bash) could not be read, so it is not here.
    _starcoder2_multiple("Code Llama 7B", 0.2635, 50),
]

# Sizes as the model cards and papers name them.
PARAMETERS = {
    "StarCoder": 15.5e9,
    "StarCoderBase": 15.5e9,
    "SantaCoder": 1.1e9,
    "tiny_starcoder_py": 164e6,
    "StarCoder2-3B": 3e9,
    "StarCoder2-7B": 7e9,
    "StarCoder2-15B": 15e9,
    "Code Llama 7B": 7e9,
}


def published_for(tasks: set[str]) -> list[Published]:
    """The entries on any of `tasks`, in table order."""
    return [entry for entry in PUBLISHED if entry.task in tasks]
