"""Parsing code out of model text: the toolkit part for stages that read code from a model.

What it is: tolerant helpers used by the SelfCodeAlign stages and the HumanEval evaluator, public
for any stage that needs the same: fenced code blocks (closed or cut off by the token limit,
:func:`code_blocks`, :func:`first_code`), splitting a response into solution code and its
``assert`` tests (:func:`code_and_tests`, :func:`split_tests`, :func:`clean_tests`), a test source
cut into self-contained single tests (:func:`single_tests`), a comma list
of concepts (:func:`parse_concepts`), and a one-paragraph instruction (:func:`parse_instruction`,
:func:`first_sentence`). A tiny model's output is messy: these never raise; what cannot be parsed
comes back empty. What it is not: a judge of whether the code works (the sandbox decides that).
"""

from __future__ import annotations

import ast
import re

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
CODE_LANGS = {"", "python", "py", "python3", "py3"}
CODE_START = re.compile(r"^(def |class |import |from |@|async def |[A-Za-z_]\w* *=)")


def code_blocks(text: str) -> list[str]:
    """The Python (or unlabelled) fenced blocks of ``text``, in order; an unclosed last block counts."""
    return [m.group(2).strip("\n") for m in FENCE.finditer(text)
            if m.group(1).lower() in CODE_LANGS and m.group(2).strip()]


def parses(code: str) -> bool:
    """Whether ``code`` is valid Python syntax (it is not run)."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _trim_to_parse(code: str) -> str:
    """Drop trailing lines until the code parses (a cut-off last statement); '' if nothing does."""
    lines = code.rstrip().splitlines()
    while lines and not parses("\n".join(lines)):
        lines.pop()
    return "\n".join(lines).strip("\n")


def bare_code(text: str) -> str:
    """Code in unfenced text: from the first line that looks like code to the last that parses."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if CODE_START.match(line)), None)
    return "" if start is None else _trim_to_parse("\n".join(lines[start:]))


def split_tests(code: str) -> tuple[str, str]:
    """(code without its top-level asserts, the asserts); statements after the first assert that are
    not definitions go with the tests (a test's setup), definitions stay with the code."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        keep = [ln for ln in code.splitlines() if not ln.startswith("assert ")]
        tests = [ln for ln in code.splitlines() if ln.startswith("assert ") and parses(ln)]
        return "\n".join(keep).strip("\n"), "\n".join(tests)
    lines = code.splitlines()
    body, tests, seen_assert = [], [], False
    for stmt in tree.body:
        seg = "\n".join(lines[stmt.lineno - 1:stmt.end_lineno or stmt.lineno])
        is_def = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import,
                                   ast.ImportFrom)) and not getattr(stmt, "name", "").startswith("test")
        if isinstance(stmt, ast.Assert) or (seen_assert and not is_def) or (
                isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test")):
            seen_assert = seen_assert or isinstance(stmt, ast.Assert)
            tests.append(seg)
        else:
            body.append(seg)
    return "\n".join(body).strip("\n"), "\n".join(tests).strip("\n")


def defined_names(code: str) -> set[str]:
    """Top-level names that ``code`` defines (functions, classes, assigned names); empty if it
    does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return set()
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def clean_tests(tests: str, code: str | None = None) -> str:
    """Keep tests that parse and hold at least one ``assert``; '' otherwise. Given the solution
    ``code``, top-level asserts that use none of the names it defines, directly or through
    setup that does (``s = Stack()``), are dropped (``assert 2``, ``assert True``): they prove
    nothing about the code, so a response whose tests are all like that has no tests."""
    tests = _trim_to_parse(tests)
    if not tests:
        return ""
    tree = ast.parse(tests)
    if code is not None:
        own, keep = defined_names(code), []
        lines = tests.splitlines()
        for stmt in tree.body:  # setup that uses the code taints what it binds (s = Stack())
            names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
            if not isinstance(stmt, ast.Assert):
                keep.append(stmt)
                if names & own:
                    own |= names
            elif names & own:
                keep.append(stmt)
        tests = "\n".join("\n".join(lines[st.lineno - 1:st.end_lineno or st.lineno]) for st in keep)
        tree = ast.parse(tests)
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        return ""
    return tests


def single_tests(tests: str) -> list[str]:
    """Each test of a test source as a self-contained block to run after the solution code: one
    per top-level ``assert`` and per top-level ``test*`` function (the function, then a call of it).
    Other statements are setup (``s = Stack()``, helpers). Where a source has setup, a unit repeats
    every statement before its test, the earlier asserts as guarded bare expressions (``s.pop() == 1``
    keeps its side effect, an exception there is ignored), so a test reads the state it was written
    against. Units are ``ast.unparse`` text (formatting normalised); [] if the source does not parse."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    units: list[str] = []
    before: list[ast.stmt] = []
    has_setup = False
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert):
            test: list[ast.stmt] = [stmt]
            seen: list[ast.stmt] = [ast.Try(body=[ast.Expr(stmt.test)], handlers=[ast.ExceptHandler(
                type=ast.Name("Exception", ast.Load()), name=None, body=[ast.Pass()])], orelse=[],
                finalbody=[])]
        elif isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
            test = [stmt, ast.Expr(ast.Call(ast.Name(stmt.name, ast.Load()), [], []))]
            seen = [stmt]
        else:
            has_setup = True
            before.append(stmt)
            continue
        body = [*before, *test] if has_setup else test
        units.append(ast.unparse(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))))
        before += seen
    return units


def code_and_tests(text: str) -> tuple[str, str]:
    """Split a model response into (solution code, assert tests); either may be ''.

    Two or more fenced blocks: the last block with an ``assert`` is the tests, the blocks before
    it are the code. One block or none: top-level asserts are split off the code.
    """
    blocks = code_blocks(text)
    if not blocks:
        code, tests = split_tests(bare_code(text))
        return code, clean_tests(tests, code)
    test_idx = max((i for i, b in enumerate(blocks) if "assert" in b and i > 0), default=None)
    if test_idx is None:
        code, tests = split_tests(_trim_to_parse(blocks[0]))
        return code, clean_tests(tests, code)
    code, stray = split_tests(_trim_to_parse("\n\n".join(blocks[:test_idx])))
    tests = "\n".join(t for t in (stray, blocks[test_idx]) if t)
    return code, clean_tests(tests, code)


def first_code(text: str) -> str:
    """The first fenced Python block that parses (trimmed if cut off), else code found in the bare text."""
    for block in code_blocks(text):
        code = _trim_to_parse(block)
        if code:
            return code
    return bare_code(text)


def parse_concepts(text: str, limit: int = 8) -> list[str]:
    """Concepts from an answer: the text after a 'Concepts:' label, else bullet lines, else the first
    line with a comma (code blocks ignored); split on commas or semicolons, short items only."""
    text = FENCE.sub("\n", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    bullet = re.compile(r"^([-*•]|\d+[.)])\s+")
    label = re.compile(r"\bconcepts?\b[^:\n]{0,30}:\s*(.*)$", re.I)
    parts: list[str] = []
    for i, line in enumerate(lines):
        m = label.search(line)
        if m:
            rest = m.group(1).strip()
            parts = re.split(r"[,;]", rest) if rest else [
                bullet.sub("", ln) for ln in lines[i + 1:] if bullet.match(ln)]
            break
    if not parts:
        bullets = [bullet.sub("", ln) for ln in lines if bullet.match(ln)]
        commas = next((ln for ln in lines if "," in ln), lines[0] if lines and len(lines[0]) < 80 else "")
        parts = bullets if len(bullets) > 1 else re.split(r"[,;]", commas)
        if len(bullets) <= 1 and sum(1 for p in parts if len(p.split()) <= 5) < 2:
            return []
    out: list[str] = []
    for part in parts:
        item = re.sub(r"\s+", " ", part.strip(" .`*\"'")).lower()
        if (2 <= len(item) <= 60 and len(item.split()) <= 8 and item not in out and not item.endswith(":")
                and item not in ("python", "concept", "concepts", "code")):
            out.append(item)
    return out[:limit]


def first_sentence(text: str, min_chars: int = 20, max_chars: int = 240) -> str:
    """The first prose sentence of an answer (code blocks dropped); '' if it is short or code."""
    lines = [ln.strip() for ln in FENCE.sub("\n", text).splitlines() if ln.strip()]
    prose = next((ln for ln in lines if not CODE_START.match(ln) and not ln.endswith(":")), "")
    sentence = re.split(r"(?<=[.!?])\s", prose, maxsplit=1)[0].strip()
    return sentence[:max_chars] if len(sentence) >= min_chars else ""


def parse_instruction(text: str, min_chars: int = 20, max_chars: int = 1500) -> str:
    """The task text: code blocks dropped; the first paragraph that starts with Write/Create/Implement
    (else the first prose one), labels and bullets dropped, cut at the first sentence that ends with
    ':' ("Here's how you can implement it:") or a few-shot label; '' when short or code."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", FENCE.sub("\n\n", text)) if p.strip()]
    label = re.compile(r"^(([-*]|\d+[.)])\s+)?\**(task|instruction|exercise)?\**\s*:?\s*", re.I)
    paras = [label.sub("", p, count=1) if re.match(r"^([-*]|\d+[.)])\s|\**(task|instruction|exercise)\b",
                                                    p, re.I) else p for p in paras]
    pick = next((p for p in paras if re.match(r"(write|create|implement|design|build|define)\b", p, re.I)),
                next((p for p in paras if not CODE_START.match(p) and not p.endswith(":")), ""))
    pick = re.split(r"\n\s*(Concepts|Category|Difficulty|Solution|Tests?|Example|Output)\s*:", pick)[0]
    kept = []
    for sentence in re.split(r"(?<=[.!?])\s+", pick.strip()):
        if sentence.endswith(":"):
            break
        kept.append(sentence)
    text = " ".join(kept).strip()
    if CODE_START.match(text):
        return ""
    return text[:max_chars] if len(text) >= min_chars else ""
