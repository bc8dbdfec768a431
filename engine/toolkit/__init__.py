"""The public toolkit for stage and loop authors: what several stages share, documented once.

What it is: ``engine.toolkit.prompting`` (prompting a sampler with whole message lists: sampling
options, templates, adapter by role, assistant prefix, stop), ``engine.toolkit.judging`` (verdict
parsing, vote tallies, judge and refine prompts), ``engine.toolkit.code`` (code and tests out of
model text), ``engine.toolkit.sandboxing`` (running jobs in the run's sandbox),
``engine.toolkit.math`` (final answers out of model text, checking them with math-verify, the
GSM8K sample), ``engine.toolkit.math_problems`` (procedural problems by level, a held-out set) and
``engine.toolkit.humaneval`` (HumanEval's problems, the program and the check that run an answer);
the LoRA trainer base is ``engine.training.lora`` and data-file helpers are ``engine.data``.
Built-in plugins use exactly these, so a third-party stage can do what a built-in does. What it is
not: a plugin; no stage is registered here.
"""
