"""Parsing a tiny model's messy answers: code and tests, concepts, task text."""

from __future__ import annotations

from engine.toolkit.code import code_and_tests, first_code, first_sentence, parse_concepts, parse_instruction

TWO_BLOCKS = """Here is my solution:
```python
def add(a, b):
    return a + b
```
Tests:
```python
assert add(1, 2) == 3
assert add(0, 0) == 0
```
Hope this helps!"""


def test_two_fenced_blocks() -> None:
    code, tests = code_and_tests(TWO_BLOCKS)
    assert code == "def add(a, b):\n    return a + b"
    assert tests == "assert add(1, 2) == 3\nassert add(0, 0) == 0"


def test_one_block_with_asserts_is_split() -> None:
    code, tests = code_and_tests("```py\ndef sq(x):\n    return x * x\n\nassert sq(3) == 9\n```")
    assert code == "def sq(x):\n    return x * x" and tests == "assert sq(3) == 9"


def test_unclosed_fence_cut_by_token_limit() -> None:
    text = "```python\ndef f(x):\n    return x\n```\n```python\nassert f(1) == 1\nassert f("
    code, tests = code_and_tests(text)
    assert code == "def f(x):\n    return x" and tests == "assert f(1) == 1"


def test_bare_code_without_fences() -> None:
    text = "Sure! Here it is.\ndef neg(x):\n    return -x\nassert neg(2) == -2\nThat is all."
    code, tests = code_and_tests(text)
    assert code == "def neg(x):\n    return -x" and tests == "assert neg(2) == -2"


def test_missing_tests_give_empty_tests() -> None:
    code, tests = code_and_tests("```python\ndef f():\n    return 1\n```\n```python\nprint(f())\n```")
    assert code.startswith("def f()") and tests == ""
    assert code_and_tests("I cannot do that.") == ("", "")
    assert code_and_tests("") == ("", "")


def test_asserts_that_do_not_touch_the_code_are_dropped() -> None:
    text = "```python\ndef f(x):\n    return x\n```\n```python\nassert 2\nassert True\n```"
    assert code_and_tests(text) == ("def f(x):\n    return x", ""), "no real test: no tests"
    text = ("```python\nclass Stack:\n    pass\nLIMIT = 3\n```\n```python\nassert 1 == 1\ns = Stack()\n"
            "t = s\nassert t is s\nassert LIMIT == 3\nxs = [1]\nassert xs == [1]\n```")
    assert code_and_tests(text)[1] == "s = Stack()\nt = s\nassert t is s\nassert LIMIT == 3\nxs = [1]"


def test_non_python_blocks_are_ignored() -> None:
    text = "```bash\npip install x\n```\n```python\ndef g(y):\n    return y\n```\n```\nassert g(1) == 1\n```"
    assert code_and_tests(text) == ("def g(y):\n    return y", "assert g(1) == 1")


def test_first_code_prefers_a_parsing_block() -> None:
    text = "```python\ndef h(:\n```\n```python\ndef h():\n    return 2\n```"
    assert first_code(text) == "def h():\n    return 2"


def test_concepts() -> None:
    assert parse_concepts("Concepts: Recursion, list slicing; error handling.\nmore text") == [
        "recursion", "list slicing", "error handling"]
    assert parse_concepts("- loops\n- string formatting\n- loops") == ["loops", "string formatting"]
    assert parse_concepts("   ") == []
    assert len(parse_concepts(", ".join(f"c{i}x" for i in range(20)), limit=5)) == 5


def test_instruction() -> None:
    text = "Task: Write a function `rev(s)` that reverses a string.\n\nConcepts: strings\nTask: other"
    assert parse_instruction(text) == "Write a function `rev(s)` that reverses a string."
    assert parse_instruction("Task: ok") == ""


def test_messy_answers_seen_from_smollm2() -> None:
    text = "```python\ndef f(): pass\n```\nThe key concepts are: loops, dicts"
    assert parse_concepts(text) == ["loops", "dicts"]
    assert parse_concepts("Key concepts:\n1. hashing\n2. sorting") == ["hashing", "sorting"]
    prose = ("This function uses a function called `get_event_loop_policy()` to set up a new event loop, "
             "which is a built-in Python function. It returns it.")
    assert parse_concepts(prose) == []
    assert first_sentence("Concept:\n```python\ndef f(): pass\n```\n" + prose) == prose.split(". ")[0] + "."
    assert first_sentence("```python\ndef f(): pass\n```") == ""
    code_only = "```python\ndef mean(v):\n    return sum(v) / len(v)\n```\n\nOutput:\n```python\nmean(x"
    assert parse_instruction(code_only) == ""
    assert parse_instruction("- Write a Python function `f(x)` that doubles x.") == (
        "Write a Python function `f(x)` that doubles x.")


def test_instruction_from_chatty_answers() -> None:
    want = "Write a Python function `g(xs)` that returns the largest even integer."
    chatty = ("Here's a Python exercise that uses the given concepts:\n\n" + want
              + "\n\n```python\ndef g(xs):\n    return max(xs)\n```\n\nExample:\n")
    assert parse_instruction(chatty) == want
    how = "Write a Python function `f(s)` that counts vowels. Here's how you can implement it:\n\n```python\n"
    assert parse_instruction(how) == "Write a Python function `f(s)` that counts vowels."
