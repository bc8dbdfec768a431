"""`loops list/show`, `plugins show` and the option table behind them; error lines (overrides
named, rich markup printed literally)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

import engine.manager
from engine import hookimpl
from engine.cli import app
from engine.cli.describe import option_rows, type_name
from engine.config import load_config
from engine.contracts import Role, Stage
from engine.errors import ConfigError, UserError


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


# -- a small plugin with a loop declared the new way ------------------------------------------

class Judge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    votes: int = Field(5, ge=1, le=64, description="critiques per node")
    tie: Literal["yes", "no"] = "no"


class TreeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["bfs", "dfs"] = "bfs"
    template: str | None = Field(None, description="needs pip install autodidact[vllm]")
    judge: Judge = Field(default_factory=Judge)


class Tree(Stage[TreeOptions]):
    """Rewrites by tree search."""

    kind = "refiner"
    name = "tree"
    accepts = ("response", "critique")
    produces = ("refinement",)

    def refine(self, responses: Any, critiques: Any) -> list[Any]:
        return []


class Votes(Stage[Judge]):
    kind = "critic"
    name = "tree"  # the same name as the refiner: `plugins show tree` must ask for --kind
    accepts = ("response",)
    produces = ("critique",)

    def critique(self, responses: Any) -> list[Any]:
        return []


class MiniOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_pairs: int | None = Field(None, ge=1, description="cap on pairs")


class Mini(Stage[MiniOptions]):
    """A two-role loop."""

    kind = "loop"
    name = "mini"
    roles = {
        "refine": Role(kind="refiner", takes=("response", "critique"), gives=("refinement",),
                       default={"name": "tree", "options": {"judge": {"votes": 3}}},
                       doc="rewrites failing answers"),
        "check": Role(kind="critic", takes=("response",), gives=("critique",), default="tree",
                      optional=True),
    }
    trains = {"policy": ("preference_pair",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        return None


class MiniPlugin:
    @hookimpl
    def register_refiners(self) -> list[type]:
        return [Tree]

    @hookimpl
    def register_critics(self) -> list[type]:
        return [Votes]

    @hookimpl
    def register_loops(self) -> list[type]:
        return [Mini]


@pytest.fixture
def mini(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine.manager.create_plugin_manager
    monkeypatch.setattr(engine.manager, "create_plugin_manager",
                        lambda **kw: real(builtins=False, entry_points=False, plugins=[MiniPlugin()]))


# -- the option table -------------------------------------------------------------------------

def test_type_names() -> None:
    assert type_name(int) == "int"
    assert type_name(str | None) == "str | None"
    assert type_name(Literal["bfs", "dfs"]) == "Literal['bfs', 'dfs']"
    assert type_name(list[str]) == "list[str]"
    assert type_name(dict[str, Any]) == "dict[str, Any]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"


def test_option_rows_flatten_nested_models() -> None:
    rows = {r.name: r for r in option_rows(TreeOptions)}
    assert list(rows) == ["strategy", "template", "judge.votes", "judge.tie"]
    votes = rows["judge.votes"]
    assert (votes.type, votes.default, votes.limits, votes.description) == (
        "int", 5, ">= 1, <= 64", "critiques per node")
    assert rows["template"].type == "str | None" and rows["template"].default is None
    merged = {r.name: r.default for r in option_rows(TreeOptions, {"judge": {"votes": 3, "tie": "no"}})}
    assert merged["judge.votes"] == 3


def test_option_rows_required_alias_and_model_default() -> None:
    class Opts(BaseModel):
        path: str
        limit: int = Field(1, alias="max")
        judge: Judge = Judge(votes=7)
        maybe: Judge | None = None

    rows = {r.name: r for r in option_rows(Opts)}
    assert rows["path"].required and rows["path"].default is None
    assert rows["max"].default == 1  # the key a config writes
    assert rows["judge.votes"].default == 7  # from the default instance, not the class
    assert rows["maybe"].type == "Judge | None" and "maybe.votes" in rows


# -- plugins show -----------------------------------------------------------------------------

def test_plugins_show_json_and_text(mini: None) -> None:
    code, out = cli("plugins", "show", "tree", "--kind", "refiner", "--json")
    assert code == 0, out
    facts = json.loads(out)
    assert facts["kind"] == "refiner" and facts["accepts"] == ["response", "critique"]
    assert facts["produces"] == ["refinement"] and facts["distribution"] == "local"
    assert facts["resources"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert {"name": "judge.votes", "type": "int", "default": 5, "required": False,
            "limits": ">= 1, <= 64", "description": "critiques per node"} in facts["options"]
    code, out = cli("plugins", "show", "tree", "--kind", "refiner")
    assert code == 0, out
    for words in ("refiner tree", "Rewrites by tree search", "judge.votes", "accepts [response, critique]",
                  "autodidact[vllm]", "Literal['bfs',"):
        assert words in out, words


def test_plugins_show_ambiguous_and_unknown(mini: None) -> None:
    code, out = cli("plugins", "show", "tree")
    assert code == 2 and "several kinds (critic, refiner)" in out and "--kind" in out
    code, out = cli("plugins", "show", "tre")
    assert code == 2
    assert out.strip() == "error: unknown stage 'tre'; did you mean 'tree'?"
    code, out = cli("plugins", "show", "tree", "--kind", "filter")
    assert code == 2 and "unknown filter 'tree'" in out


def test_plugins_show_builtin_tree_search_nested_options() -> None:
    code, out = cli("plugins", "show", "tree-search", "--json")
    assert code == 0, out
    facts = json.loads(out)
    names = {row["name"]: row for row in facts["options"]}
    assert facts["kind"] == "refiner" and facts["distribution"] == "autodidact"
    assert names["judge.votes"]["type"] == "int" and "strategy" in names
    assert names["strategy"]["type"] == "Literal['bfs', 'dfs']"


def test_plugins_list_names_the_distribution() -> None:
    code, out = cli("plugins", "list", "--json")
    assert code == 0, out
    rows = json.loads(out)
    judge = next(r for r in rows if r["name"] == "llm-judge")
    assert judge["distribution"] == "autodidact" and judge["plugin"] == "plugins.critic_judge"


# -- loops ------------------------------------------------------------------------------------

def test_loops_show_json(mini: None) -> None:
    code, out = cli("loops", "show", "mini", "--json")
    assert code == 0, out
    facts = json.loads(out)
    refine = facts["roles"]["refine"]
    assert (refine["kind"], refine["takes"], refine["gives"], refine["optional"]) == (
        "refiner", ["response", "critique"], ["refinement"], False)
    assert refine["doc"] == "rewrites failing answers"
    assert refine["default"]["name"] == "tree"
    assert refine["default"]["options"] == {"strategy": "bfs", "template": None,
                                            "judge": {"votes": 3, "tie": "no"}}  # loop's over stage's
    assert refine["default"]["loop_options"] == {"judge": {"votes": 3}}
    assert facts["roles"]["check"]["optional"] is True
    assert facts["roles"]["check"]["default"]["options"] == {"votes": 5, "tie": "no"}
    assert facts["options"][0]["name"] == "max_pairs" and facts["options"][0]["limits"] == ">= 1"
    assert facts["trains"] == {"policy": ["preference_pair"]}


def test_loops_show_text(mini: None) -> None:
    code, out = cli("loops", "show", "mini")
    assert code == 0, out
    for words in ("loop mini", "refine: refiner, required", "hands in [response, critique]",
                  "expects back [refinement]", "default: tree", "judge.votes=3", "judge.tie=\"no\"",
                  "check: critic, optional", "rewrites failing answers", "max_pairs", "cap on pairs",
                  "policy on [preference_pair]"):
        assert words in out, words


def test_loops_list(mini: None) -> None:
    code, out = cli("loops", "list", "--json")
    assert code == 0, out
    assert json.loads(out) == [{"name": "mini", "roles": ["refine", "check"],
                                "trains": {"policy": ["preference_pair"]}, "plugin": "MiniPlugin",
                                "distribution": "local", "version": "local"}]
    code, out = cli("loops", "list")
    assert code == 0 and "mini" in out and "refine, check" in out


def test_loops_show_unknown(mini: None) -> None:
    code, out = cli("loops", "show", "minni")
    assert code == 2 and out.strip() == "error: unknown loop 'minni'; did you mean 'mini'?"


def test_builtin_loops_show() -> None:
    code, out = cli("loops", "show", "spar", "--json")
    assert code == 0, out
    facts = json.loads(out)
    assert facts["roles"]["refine"]["kind"] == "refiner"
    assert facts["roles"]["refine"]["default"]["name"] == "tree-search"
    assert "votes" in facts["roles"]["refine"]["default"]["options"]["judge"]
    assert set(facts["trains"]) == {"policy", "refiner"}
    code, out = cli("loops", "list", "--json")
    assert code == 0 and {"self", "spar", "selfcodealign"} <= {r["name"] for r in json.loads(out)}


# -- error lines --------------------------------------------------------------------------------

GOOD = """\
loop: self
sampler: {name: scripted}
stages:
  judge: {name: llm-judge, options: {votes: 3}}
"""


def test_override_error_names_the_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    code, out = cli("validate", str(cfg), "iterations=2", "stages.judge.options.votes=0")
    assert code == 2
    assert out.strip() == ("error: override 'stages.judge.options.votes=0': stages.judge.options.votes: "
                           "Input should be greater than or equal to 1")
    with pytest.raises(ConfigError) as info:  # a key the file lacks: the override made it
        load_config(cfg, ["evaluators.0.options.subset=10"])
    assert str(info.value).startswith("override 'evaluators.0.options.subset=10': evaluators:")
    assert "line" not in str(info.value)


def test_file_errors_keep_their_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD.replace("votes: 3", "votes: 0"))
    with pytest.raises(ConfigError) as info:
        load_config(cfg, ["iterations=2"])
    assert str(info.value) == (f"{cfg}: stages.judge.options.votes: Input should be greater than or "
                               "equal to 1 (line 4)")
    with pytest.raises(ConfigError) as info:  # one problem from each: each cited by its source
        load_config(cfg, ["stages.judge.options.tie=maybe"])
    text = str(info.value)
    assert "votes: Input should be greater than or equal to 1 (line 4)" in text
    assert "(override 'stages.judge.options.tie=maybe')" in text


def test_error_text_is_not_rich_markup(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from engine.cli.app import user_errors

    with pytest.raises(typer.Exit):
        with user_errors():
            raise UserError("install it with pip install 'autodidact[vllm]' [bold]now[/bold]")
    assert "pip install 'autodidact[vllm]' [bold]now[/bold]" in capsys.readouterr().err
    code, out = cli("plugins", "show", "x[vllm]")
    assert code == 2 and "unknown stage 'x[vllm]'" in out
