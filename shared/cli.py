"""The ``goldenhour`` command. Services add sub-commands through the
``goldenhour.commands`` (and ``goldenhour.bench``) entry-point groups, so this
module imports none of them and a box without an extra installed still gets a
clear message.

Sub-commands load lazily: ``goldenhour --help`` reads each one's help from its
source without importing it, and ``goldenhour X`` imports only X. Keep the
imports at the top of this module to the standard library and typer.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

from shared import __version__

logger = logging.getLogger(__name__)

# Sub-commands of shared/ itself that import heavier modules (broker, settings, supervisor).
BUILTIN: dict[str, dict[str, str]] = {
    "goldenhour.commands": {"demo": "shared.system_cli:demo", "broker": "shared.system_cli:broker"},
    "goldenhour.bench": {"e2e": "shared.system_cli:bench_e2e"},
}


def _entry_points(group: str) -> dict[str, str]:
    """``name -> "module:attr"`` of one entry-point group, this package's first
    (one distribution's metadata is read much faster than every installed one's)."""
    from importlib.metadata import PackageNotFoundError, distribution, entry_points

    found = dict(BUILTIN.get(group, {}))
    try:
        own = distribution("goldenhour").entry_points.select(group=group)
    except PackageNotFoundError:
        own = entry_points(group=group)
    found.update({entry.name: entry.value for entry in own})
    return found


def short_help(target: str) -> str:
    """The help of ``module:attr`` read from its source, without importing it: a
    function's docstring (first paragraph) or the ``help=`` of ``attr = typer.Typer(...)``."""
    module, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            return ""
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == attr:
            return " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
        named = isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == attr for t in node.targets)
        if named and isinstance(node.value, ast.Call):  # type: ignore[attr-defined]
            for keyword in node.value.keywords:  # type: ignore[attr-defined]
                if keyword.arg == "help" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return ""


def _missing_extra(name: str, error: Exception) -> typer.Typer:
    stub = typer.Typer(help=f"(unavailable: {error})", invoke_without_command=True)

    @stub.callback()
    def unavailable() -> None:
        from rich.console import Console

        Console().print(f"[red]'goldenhour {name}' needs the '{name}' extra:[/] {error}\n"
                        f"install it with: pip install 'goldenhour[{name}]'")
        raise typer.Exit(2)

    return stub


def load_command(name: str, target: str) -> Any:
    """Import ``module:attr``: a Typer app or a command function, or, when its
    extra is missing, a command that says which extra to install."""
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        return _missing_extra(name, exc)


def _as_click(name: str, loaded: Any) -> Any:
    if isinstance(loaded, typer.Typer):
        return typer.main.get_command(loaded)
    single = typer.Typer()
    single.command(name)(loaded)
    return typer.main.get_command(single)


class LazyCommand(TyperCommand):
    """Stands in a group for a sub-command until it runs: its help comes from
    the source, the module is imported by ``make_context``."""

    def __init__(self, name: str, target: str, load: Callable[[str, str], Any] = load_command) -> None:
        super().__init__(name=name, help=short_help(target), add_help_option=False)
        self.target = target
        self._load = load
        self._real: Any = None

    def real(self) -> Any:
        """The loaded click command."""
        if self._real is None:
            self._real = _as_click(self.name or "", self._load(self.name or "", self.target))
        return self._real

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        return self.real().make_context(info_name, args, parent=parent, **extra)

    def get_params(self, ctx: Any) -> list[Any]:
        return self.real().get_params(ctx)  # shell completion asks for the real parameters


class LazyGroup(TyperGroup):
    """A group whose entry-point sub-commands load when they are run."""

    entry_group: ClassVar[str] = "goldenhour.commands"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, target in sorted(_entry_points(self.entry_group).items()):
            self.commands.setdefault(name, LazyCommand(name, target))

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(self.commands)


class LazyBenchGroup(LazyGroup):
    """``goldenhour bench``: benchmarks contributed through ``goldenhour.bench``."""

    entry_group = "goldenhour.bench"


app = typer.Typer(
    name="goldenhour",
    cls=LazyGroup,
    help="From a chest X-ray in an ambulance to an ER that has agreed to take the patient. "
    "AI results are NOT for clinical use.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help for the root: typer's rich help alone costs ~0.1 s of start-up.
    rich_markup_mode=None,
)
bench_app = typer.Typer(cls=LazyBenchGroup, help="Benchmarks that print their figures.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _register_plugins() -> None:
    """Import every sub-command now (tests that want them all loaded at once);
    ``main`` does not need this: the groups load a sub-command when it runs."""
    for group, target_app in (("goldenhour.commands", app), ("goldenhour.bench", bench_app)):
        registered = {info.name for info in target_app.registered_groups} | {
            info.name for info in target_app.registered_commands}
        for name, target in sorted(_entry_points(group).items()):
            if name in registered:
                continue
            sub = load_command(name, target)
            if isinstance(sub, typer.Typer):
                target_app.add_typer(sub, name=name)
            else:  # a single command, e.g. ``goldenhour diagnose PATH``
                target_app.command(name)(sub)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version.")] = False,
) -> None:
    """goldenhour command line."""


@app.command()
def topics(
    markdown: Annotated[bool, typer.Option(help="Print the Markdown table of docs/mqtt.md.")]
    = False,
) -> None:
    """List every MQTT topic of the contract with its schema, QoS and retain flag."""
    from rich.console import Console
    from rich.table import Table

    from shared.topics import TOPICS

    console = Console()
    if markdown:
        console.print(topic_table_markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("topic", "schema", "QoS", "retain", "from -> to")
    for spec in TOPICS:
        table.add_row(spec.pattern, f"{spec.payload.SCHEMA} v{spec.payload.VERSION}",
                      str(spec.qos), "yes" if spec.retain else "no",
                      f"{spec.publisher} -> {spec.subscriber}")
    console.print(table)


def topic_table_markdown() -> str:
    """The topic table as Markdown (kept in docs/mqtt.md; a test compares them)."""
    from shared.topics import TOPICS

    lines = ["| topic | payload | QoS | retain | from | to | meaning |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec in TOPICS:
        lines.append(
            f"| `{spec.pattern}` | `{spec.payload.SCHEMA}` v{spec.payload.VERSION} | {spec.qos} "
            f"| {'yes' if spec.retain else 'no'} | {spec.publisher} | {spec.subscriber} "
            f"| {spec.description} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
