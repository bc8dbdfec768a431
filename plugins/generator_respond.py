"""The ``respond`` generator: answer tasks by sampling ``n`` responses each from the run's model.

What it is: tasks in, responses out (each linked to its task), batched as one sampler call. A
response carries its task's verifiable ``meta['checks']`` (engine.toolkit.judging.carried).
What it is not: a judge or a filter; it keeps every sample, even empty ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Link, Record, Response, Task
from engine.toolkit.judging import carried
from engine.toolkit.prompting import SamplingOptions, load_template, sample_texts

TEMPLATE = Path(__file__).parent / "templates" / "respond.txt"


class RespondOptions(SamplingOptions):
    pass


class Respond(Stage[RespondOptions]):
    kind = "generator"
    name = "respond"
    accepts = ("task",)
    produces = ("response",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        tasks = [t for t in inputs if isinstance(t, Task)]
        template = load_template(self.options.template, TEMPLATE)
        prompts = [template.format(prompt=t.prompt) for t in tasks]
        out: list[Record] = []
        for task, (texts, version) in zip(tasks, sample_texts(self.context, self.name, prompts, self.options),
                                          strict=True):
            for i, text in enumerate(texts):
                out.append(Response(text=text, prompt=task.prompt, sample_index=i, model_version=version,
                                    parents=[Link(id=task.id, role="input")], meta=carried(task)))
        return out


@hookimpl
def register_generators() -> list[type]:
    return [Respond]
