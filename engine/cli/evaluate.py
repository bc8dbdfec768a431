"""``autodidact eval``: any registered evaluator on any model version a run recorded, or on a base model.

What it is: the command over engine.runtime.evaluation: ``eval RUN_DIR --evaluator NAME [--option
key=value ...] [--iteration N | --model-version ID] [--label L]`` stores its results in that run's
lineage beside the loop's own (as ``NAME@L`` at the version's iteration, so ``autodidact report``
shows them and pairs them item by item across iterations); ``eval --model NAME [--config FILE]
--evaluator ...`` evaluates a base model without a run and keeps nothing. Either way it prints a
table of the metrics with their 95% confidence intervals. Bad input is one line, exit 2.
What it is not: the evaluation logic (the evaluator plugins), nor the loop's own evaluations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape


def evaluate(
    run_dir: Annotated[Path | None, typer.Argument(
        help="a run directory: evaluate a model version it recorded and store the results in its "
             "lineage (leave out with --model: a base model, nothing kept)", show_default=False)] = None,
    evaluator: Annotated[str | None, typer.Option(
        "--evaluator", "-e", help="a registered evaluator (autodidact plugins list)",
        show_default=False)] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="an evaluator option as key=value (value read as YAML; dotted keys nest), "
                               "repeatable", show_default=False)] = None,
    iteration: Annotated[int | None, typer.Option(
        help="the policy version at the end of this iteration (0: the base model; default: the last)",
        show_default=False)] = None,
    model_version: Annotated[str | None, typer.Option(
        "--model-version", help="a model version id the run recorded (any adapter role)",
        show_default=False)] = None,
    label: Annotated[str, typer.Option(
        help="stored as evaluator NAME@LABEL: another label keeps another set of results")] = "eval",
    model: Annotated[str | None, typer.Option(
        help="without a run: the base model to evaluate (default sampler: the embedded default's)",
        show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        help="without a run: take the sampler and sandbox from this config", show_default=False)] = None,
    traceback: Annotated[bool, typer.Option("--traceback", help="print the full traceback of a "
                                            "failing evaluator")] = False,
) -> None:
    """Evaluate a model version of a run (or a base model) with any evaluator and options; prints the
    metrics with 95% confidence intervals. For a run, the results land in its lineage beside the
    loop's own evaluations (autodidact report RUN_DIR shows them, and tests them against the base)."""
    from engine.cli.app import out, stage_progress, user_errors
    from engine.errors import UserError
    from engine.runtime.evaluation import evaluate_model, evaluate_run, parse_options

    with user_errors(traceback):
        if not evaluator:
            raise UserError("name an evaluator with --evaluator NAME (autodidact plugins list shows them)")
        options = parse_options(option or [])
        if run_dir is not None:
            if model is not None or config is not None:
                raise UserError("--model and --config are for a base model without a run; a run's "
                                "versions are evaluated with the run's own config")
            with stage_progress() as (progress, _):
                done = evaluate_run(run_dir, evaluator, options, iteration=iteration,
                                    model_version=model_version, label=label, progress=progress)
        else:
            if model is None and config is None:
                raise UserError("give a RUN_DIR, or --model NAME (or --config FILE) to evaluate a base model")
            if iteration is not None or model_version is not None:
                raise UserError("--iteration and --model-version pick a version of a run: give its RUN_DIR")
            with stage_progress() as (progress, _):
                done = evaluate_model(evaluator, options, model=model, config=config, progress=progress)
    out.print(results_table(done))
    if run_dir is not None:
        out.print(f"stored in the lineage of {escape(str(run_dir))} as {escape(done.evaluator)}, iteration "
                  f"{done.iteration}\n  autodidact report {escape(str(run_dir))}", highlight=False)
    else:
        out.print("base model evaluated without a run: nothing was stored", highlight=False)


def results_table(done: Any) -> Any:
    """One row per metric: value, its 95% confidence interval (``details["ci95"]``) and n."""
    from rich.table import Table

    version = done.model_version or "base model"
    table = Table("metric", "value", "95% CI", "n",
                  title=f"{done.evaluator} on {version} (iteration {done.iteration})")
    for r in done.results:
        ci = r.details.get("ci95")
        table.add_row(escape(f"{r.evaluator}/{r.metric}"), f"{r.value:.4g}",
                      f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "", str(r.n))
    return table


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the top-level app."""
    app.command(name="eval")(evaluate)
