"""``autodidact serve``: any registered sampler behind an OpenAI-compatible HTTP endpoint.

What it is: a Typer command that builds the named sampler plugin through the plugin manager
(options from ``--option key=value``, values read as YAML), loads its model before saying it is
ready, and serves it with engine.sampling.serve until Ctrl-C, printing one line with the base URL
(what an ``openai`` sampler's ``base_url`` takes). Bad input (an unknown sampler, a bad option, a
port in use, a model that does not resolve) is one line and exit code 2. What it is not: the
server itself (engine/sampling/serve.py) or a process manager.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

ModelOpt = Annotated[str, typer.Option("--model", help="the model: alias, local HF directory or hub id; "
                                       "also the name the server answers to")]
SamplerOpt = Annotated[str, typer.Option("--sampler", help="a registered sampler plugin "
                                         "(autodidact plugins list)")]
HostOpt = Annotated[str, typer.Option("--host", help="the address to listen on")]
PortOpt = Annotated[int, typer.Option("--port", help="the port to listen on (0: any free one)")]
OptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", "-o", help="a sampler option, key=value (value read as YAML; dotted keys for nested "
                           "options); repeatable", show_default=False)]
BatchOpt = Annotated[int, typer.Option("--max-batch", help="at most this many requests per sampler call")]


def serve(model: ModelOpt = "smollm2-135m-instruct", sampler: SamplerOpt = "transformers",
          host: HostOpt = "127.0.0.1", port: PortOpt = 8000, option: OptionOpt = None,
          max_batch: BatchOpt = 64) -> None:
    """Serve a sampler over the OpenAI wire format (/v1/chat/completions, /v1/completions,
    /v1/models, /health); concurrent requests are micro-batched into one sampler call."""
    from pydantic import ValidationError

    from engine.cli.app import out, user_errors
    from engine.configfile import apply_overrides
    from engine.contracts import StageContext, build_stage
    from engine.errors import UserError
    from engine.manager import create_plugin_manager
    from engine.sampling.serve import SamplerServer

    with user_errors():
        pm = create_plugin_manager()
        try:
            info = pm.stage("sampler", sampler)
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from None
        options = apply_overrides({}, option or [])
        try:
            stage = build_stage(info.cls, options, StageContext(model_name=model, plugins=pm))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(f"sampler {sampler!r}: option {where}: {first['msg']}") from None
        problems = info.cls.preflight(stage.options)
        if problems:
            raise UserError("; ".join(problems))
        server = SamplerServer(stage, host, port, model=model, max_batch=max_batch)  # type: ignore[arg-type]
        try:
            load = getattr(stage, "load", None)
            if callable(load):  # load the model now: its errors show here, and the first request is fast
                load()
            out.print(f"serving the {escape(sampler)} sampler ({escape(model)}) at {escape(server.url)}",
                      highlight=False, soft_wrap=True)
            server.serve_forever()
        except KeyboardInterrupt:  # Ctrl-C: the way to stop it
            pass
        finally:
            server.close()
            close = getattr(stage, "close", None)
            if callable(close):
                close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the top-level app."""
    app.command()(serve)
