"""The ``ganomaly`` command line: one subcommand per process kind.

The command table names each command's settings class and ``run`` by import path, and
only the command being run (or asked for ``--help``) is imported: ``ganomaly --help``
and the light commands (feedback, models, alerts, stack) start without importing torch.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ganomaly.errors import UserError


class CliParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one ``error:`` line and exit code 2, like every other user error.

    Abbreviated flags are refused: argparse would take ``--clas 7`` for ``--class 7``, and a
    typo that happens to be a prefix of another setting would silently set that one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


@dataclass(frozen=True)
class Command:
    help: str
    settings: str  # "module:SettingsClass", a module that imports without torch
    run: str  # "module:function", imported only when the command runs
    positional: tuple[str, ...] = ()
    description: str | None = None  # default: the settings module's docstring


COMMANDS: dict[str, Command] = {
    "train": Command("train a model and write an artifact", "ganomaly.cli.commands.train:TrainSettings", "ganomaly.cli.commands.train:run"),
    "evaluate": Command("evaluate an artifact on a labelled test set", "ganomaly.cli.commands.evaluate:EvaluateSettings",
                        "ganomaly.cli.commands.evaluate:run"),
    "bench model": Command("scoring and training throughput", "ganomaly.cli.commands.bench:BenchModelSettings", "ganomaly.cli.commands.bench:run"),
    "bench stream": Command("end-to-end worker throughput and latency; --soak-minutes: one worker held at half load", "ganomaly.cli.commands.bench_stream:BenchStreamSettings",
                            "ganomaly.cli.commands.bench_stream:run"),
    "worker": Command("run a streaming worker (Kafka -> GANomaly -> Kafka + Redis)", "worker.settings:WorkerSettings",
                      "worker.app:run_worker",
                      description="Consume encoded images, score them in micro-batches, write results, alerts and dead letters."),
    "schemas": Command("print or write the JSON Schemas of the worker's messages", "ganomaly.cli.commands.schemas:SchemasSettings",
                       "ganomaly.cli.commands.schemas:run_schemas",
                       description="Print the JSON Schemas of the worker's messages, or write them as <name>.schema.json files."),
    "produce": Command("publish images to the input topic", "producers.cli:ProduceSettings", "producers.cli:run"),
    "replay": Command("evaluate a model or the workers on a stretch of a topic", "replay.main:ReplaySettings",
                      "replay.main:cli_run"),
    "feedback": Command("post verdicts (normal/anomaly) on results to the feedback topic", "producers.feedback:FeedbackSettings",
                        "producers.feedback:run",
                        description="Post operator verdicts (normal or anomaly) on results to the feedback topic, for the trainer."),
    "trainer": Command("refit on confirmed normals, gate against the champion, promote", "trainer.settings:TrainerSettings",
                       "trainer.main:run_trainer"),
    "models": Command("the model registry: list, add, promote VERSION, rollback, threshold VERSION", "ganomaly.cli.commands.models:ModelsSettings",
                      "ganomaly.cli.commands.models:run_models", positional=("action", "version"),
                      description="The model registry: list the versions and the current one, add an artifact to the store "
                                  "(--promote-now to make it current at once), promote VERSION, or roll back to the previous one."),
    "stack": Command("start/stop a local broker and Redis (dev and demo)", "ganomaly.cli.commands.stack:StackSettings",
                     "ganomaly.cli.commands.stack:run", positional=("action",)),
    "alerts": Command("print alerts from the Redis stream (optionally follow)", "ganomaly.cli.commands.stack:AlertsSettings",
                      "ganomaly.cli.commands.stack:run_alerts",
                      description="Print the most recent alerts from the workers' Redis alert stream, one line each (id, severity, source, score); "
                                  "--follow keeps printing new ones as they arrive."),
    "console": Command("the operators' web console: alerts with their anomaly maps, review, models, thresholds, fleet",
                       "console.settings:ConsoleSettings", "console.main:run_console"),
    "explain": Command("why one result or image scored what it did: its anomaly map over the frame, as PNGs",
                       "ganomaly.cli.commands.explain:ExplainSettings", "ganomaly.cli.commands.explain:run"),
    "demo-summary": Command("summarise labelled results in plain language (caught, false alarms, latency)",
                            "ganomaly.cli.commands.demo_summary:DemoSummarySettings", "ganomaly.cli.commands.demo_summary:run"),
}
GROUPS = {"bench": "benchmarks: model (scoring/training throughput), stream (end to end, and the soak)"}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _runner(ref: str) -> Callable[[Any], Any]:
    def run(settings: Any) -> Any:
        return _load(ref)(settings)

    return run


def _selected(argv: list[str]) -> str | None:
    """The command named on the command line ("bench model" for a group), or None."""
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return None
    if words[0] in GROUPS:
        return f"{words[0]} {words[1]}" if len(words) > 1 else None
    return words[0]


def _describe(cmd: Command, cls: type) -> str | None:
    if cmd.description:
        return cmd.description
    return sys.modules[cls.__module__].__doc__


def build_parser(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, tuple[type, Callable[[Any], Any]]]]:
    """The parser and {command: (settings class, run)}; with ``argv``, only the command it names is loaded."""
    wanted = None if argv is None else _selected(argv)
    parser = CliParser(prog="ganomaly", description="GANomaly anomaly detection for image streams")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    table: dict[str, tuple[type, Callable[[Any], Any]]] = {}
    for name, cmd in COMMANDS.items():
        head, _, tail = name.partition(" ")
        if tail:
            if head not in groups:
                gp = sub.add_parser(head, help=GROUPS[head], description=GROUPS[head])
                groups[head] = gp.add_subparsers(dest=f"{head}_target", required=True, metavar="TARGET")
            p = groups[head].add_parser(tail, help=cmd.help)
        else:
            p = sub.add_parser(name, help=cmd.help)
        p.set_defaults(_command=name)
        if argv is None or name == wanted:
            from ganomaly.cli.flags import add_settings_arguments  # pydantic: only for a command's own flags

            cls = _load(cmd.settings)
            p.description = _describe(cmd, cls)
            add_settings_arguments(p, cls, positional=cmd.positional)
            table[name] = (cls, _runner(cmd.run))
    return parser, table


def _check_log_level(level: str) -> None:
    if level.upper() not in logging.getLevelNamesMapping():
        msg = f"--log-level {level!r}: use debug, info, warning, error or critical"
        raise UserError(msg)


# Variables of ours that no settings class reads: the demo script's and the tests' own knobs.
RESERVED_ENV_PREFIXES = ("GANOMALY_DEMO_", "GANOMALY_TEST_")


def check_environment(own: type) -> None:
    """A ``GANOMALY_*`` variable that no command reads is a typo (``GANOMALY_BOOTSTRAP_SERVER``) that would
    otherwise be ignored without a word, the default used instead: one error naming it and the closest name."""
    from ganomaly.connections.compose import env_names, renamed

    ours = {k for k in os.environ if k.startswith("GANOMALY_") and not k.startswith(RESERVED_ENV_PREFIXES)}
    rest = ours - env_names(own)
    if not rest:
        return
    known: set[str] = set()
    old: dict[str, str] = {}
    for cmd in COMMANDS.values():  # only now every settings class is imported (no torch: they are torch-free)
        cls = _load(cmd.settings)
        known |= env_names(cls)
        old |= renamed(cls)
    problems = []
    for name in sorted(rest - known):
        if name in old:
            problems.append(f"{name} is now {old[name]}")
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        problems.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    if problems:
        msg = f"unknown environment variable{'s' if len(problems) > 1 else ''}: {', '.join(problems)}; no ganomaly command reads " \
              f"{'them' if len(problems) > 1 else 'it'} (names starting {' or '.join(RESERVED_ENV_PREFIXES)} are left to scripts)"
        raise UserError(msg)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser, table = build_parser(args)
    try:  # argparse exits (0 after --help, 2 after its one error: line); callers of main() get the code back
        ns, extra = parser.parse_known_args(args)
        if extra:  # named with the command's own --help, which lists what it takes
            CliParser(prog=f"ganomaly {ns._command}").error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    cls, fn = table[ns._command]
    from ganomaly.cli.flags import settings_from_args

    try:
        check_environment(cls)  # first: a mistyped variable may be why the settings are incomplete
        settings = settings_from_args(cls, ns)
        level = str(getattr(settings, "log_level", "info"))
        _check_log_level(level)
        from ganomaly.log import configure_logging

        configure_logging(level)
        rc = fn(settings)
    except UserError as e:
        print("error: " + " ".join(str(e).splitlines()), file=sys.stderr)
        return 2
    except OSError as e:
        # A path the user named that the settings could not check ahead (a read-only or special
        # file system): one line naming it. Errors without a path (network) are not the user's input.
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
