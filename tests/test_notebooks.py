import json

import pytest

from codekiln.curate.notebooks import (
    cell_output,
    notebook_language,
    notebook_script,
    notebook_structured,
    parse_notebook,
)

PY_NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
    "cells": [
        {"cell_type": "markdown", "source": ["# Load data\n", "\n", "Read the *CSV*.  \n"]},
        {
            "cell_type": "code",
            "source": ["%matplotlib inline\n", "import math\n", "print('hi', end='')\n"],
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["hi"]},
                {"output_type": "stream", "name": "stdout", "text": " there\n"},
            ],
        },
        {"cell_type": "raw", "source": "raw cells are dropped"},
        {
            "cell_type": "code",
            "source": "\n\nmath.pi\n\n",
            "outputs": [
                {
                    "output_type": "execute_result",
                    "data": {"text/plain": ["3.14159"], "image/png": "iVBORw0KGgo="},
                    "execution_count": 2,
                    "metadata": {},
                }
            ],
        },
        {"cell_type": "code", "source": "x = 1\n", "outputs": []},
        {
            "cell_type": "code",
            "source": "1 / 0",
            "outputs": [
                {
                    "output_type": "error",
                    "ename": "ZeroDivisionError",
                    "evalue": "division by zero",
                    "traceback": ["\x1b[0;31m----\x1b[0m", "ZeroDivisionError"],
                }
            ],
        },
        {
            "cell_type": "code",
            "source": "print('x' * 60)",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "x" * 60 + "\n"}],
        },
        {"cell_type": "code", "source": "  \n", "outputs": []},
        {"cell_type": "markdown", "source": "Done."},
    ],
}


def test_python_notebook_as_script():
    assert notebook_script(PY_NOTEBOOK) == (
        "# # Load data\n"
        "#\n"
        "# Read the *CSV*.\n"
        "\n"
        "# %matplotlib inline\n"
        "import math\n"
        "print('hi', end='')\n"
        "\n"
        "math.pi\n"
        "\n"
        "x = 1\n"
        "\n"
        "1 / 0\n"
        "\n"
        "print('x' * 60)\n"
        "\n"
        "# Done.\n"
    )


def test_python_notebook_structured_cuts_long_output_to_its_first_chars():
    assert notebook_structured(PY_NOTEBOOK, max_output_chars=40) == (
        "<jupyter_start>"
        "<jupyter_text># Load data\n\nRead the *CSV*."
        "<jupyter_code>%matplotlib inline\nimport math\nprint('hi', end='')"
        "<jupyter_output>hi there"
        "<jupyter_code>math.pi<jupyter_output>3.14159"
        "<jupyter_code>x = 1<jupyter_output><empty_output>"
        "<jupyter_code>1 / 0<jupyter_output>ZeroDivisionError: division by zero"
        "<jupyter_code>print('x' * 60)<jupyter_output>" + "x" * 40 + "<jupyter_text>Done."
    )
    # With the default limit the whole output is kept.
    assert "<jupyter_output>" + "x" * 60 + "<jupyter_text>" in notebook_structured(PY_NOTEBOOK)
    cut_error = notebook_structured(PY_NOTEBOOK, max_output_chars=4)
    assert "<jupyter_code>1 / 0<jupyter_output>Zero<jupyter_code>" in cut_error
    assert notebook_structured(PY_NOTEBOOK, max_output_chars=0).count("<empty_output>") == 5


def test_cell_output_joins_streams_results_and_errors_and_drops_rich_data():
    cell = {
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "\x1b[1mloading\x1b[0m\n"},
            {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/html": "<b>"}},
            {"output_type": "display_data", "data": {"text/plain": "<Figure>"}},
            {"output_type": "execute_result", "data": {"text/plain": ["2\n"]}},
            {"output_type": "stream", "name": "stderr", "text": "warning\n\n"},
            {"output_type": "error", "ename": "ValueError", "evalue": "bad"},
        ]
    }
    assert cell_output(cell) == "loading\n<Figure>\n2\nwarning\nValueError: bad"
    assert cell_output(cell, max_chars=9) == "loading\n<"
    assert cell_output({"outputs": [{"output_type": "stream", "text": " \n"}]}) == ""
    assert cell_output({}) == ""


R_NOTEBOOK = {
    "metadata": {"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}},
    "cells": [
        {"cell_type": "markdown", "source": "## Plot\nA histogram of `x`."},
        {"cell_type": "code", "source": ["x <- rnorm(10)\n", "hist(x)"], "outputs": []},
    ],
}


def test_r_notebook_markdown_becomes_r_comments():
    assert notebook_language(R_NOTEBOOK) == "R"
    assert notebook_script(R_NOTEBOOK) == (
        "# ## Plot\n# A histogram of `x`.\n\nx <- rnorm(10)\nhist(x)\n"
    )
    assert notebook_structured(R_NOTEBOOK) == (
        "<jupyter_start><jupyter_text>## Plot\nA histogram of `x`."
        "<jupyter_code>x <- rnorm(10)\nhist(x)<jupyter_output><empty_output>"
    )


def test_scala_notebook_uses_slash_comments_and_leaves_percent_lines_alone():
    nb = {
        "metadata": {"language_info": {"name": "scala"}},
        "cells": [
            {"cell_type": "markdown", "source": "Totals"},
            {"cell_type": "code", "source": "val x = 10 % 3"},
        ],
    }
    assert notebook_script(nb) == "// Totals\n\nval x = 10 % 3\n"


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"kernelspec": {"language": "python"}}, "Python"),
        ({"kernelspec": {"name": "python3"}}, "Python"),
        ({"kernelspec": {"name": "julia-1.9"}}, "Julia"),
        ({"language_info": {"name": "julia"}}, "Julia"),
        ({"kernelspec": {"language": "C++17"}}, "C++"),
        ({"kernelspec": {"language": "bash"}}, "Shell"),
        ({"kernelspec": {"language": "javascript"}, "language_info": {"name": "x"}}, "JavaScript"),
        ({"kernelspec": {"language": "Coconut"}}, "Coconut"),
        ({}, "Python"),
    ],
)
def test_notebook_language(metadata, expected):
    assert notebook_language({"metadata": metadata, "cells": []}) == expected


def test_notebook_without_code_has_no_text():
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "Only prose."},
            {"cell_type": "code", "source": ["\n", "   "], "outputs": []},
        ]
    }
    assert notebook_script(nb) is None
    assert notebook_structured(nb) is None


def test_parse_notebook_accepts_json_text():
    assert parse_notebook(json.dumps(PY_NOTEBOOK)) == PY_NOTEBOOK


@pytest.mark.parametrize(
    "raw, message",
    [
        ('{"cells": [', "not JSON"),
        ("[1, 2]", "top level is a JSON array"),
        ('"text"', "top level is a JSON string"),
        ('{"metadata": {}}', "no 'cells' list"),
        ('{"cells": "x"}', "no 'cells' list"),
        ('{"cells": [1]}', "cell 0 has no 'cell_type'"),
        ('{"cells": [{"cell_type": "code"}, {"source": ""}]}', "cell 1 has no 'cell_type'"),
    ],
)
def test_parse_notebook_rejects_what_is_not_a_notebook(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_notebook(raw)


def test_notebook_structured_rejects_a_negative_limit():
    with pytest.raises(ValueError, match="max_output_chars"):
        notebook_structured(PY_NOTEBOOK, max_output_chars=-1)
