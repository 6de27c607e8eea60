"""The ``ganomaly`` command line: one subcommand per process kind."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from worker.errors import UserError


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[type, Callable[[Any], Any]]]]:
    from worker.commands import bench, evaluate, stream_commands, train

    parser = argparse.ArgumentParser(prog="ganomaly", description="GANomaly anomaly detection for image streams")
    sub = parser.add_subparsers(dest="command", required=True)
    table: dict[str, tuple[type, Callable[[Any], Any]]] = {}
    table["train"] = (train.register(sub), train.run)
    table["evaluate"] = (evaluate.register(sub), evaluate.run)
    bench_sub = bench.register(sub)
    table["bench model"] = (bench_sub["model"], bench.run)
    stream_commands.register_all(sub, table)
    return parser, table


def main(argv: list[str] | None = None) -> int:
    from worker.log import configure_logging
    from worker.settings_cli import settings_from_args

    parser, table = build_parser()
    ns = parser.parse_args(argv)
    key = f"bench {ns.bench_target}" if ns.command == "bench" else ns.command
    cls, fn = table[key]
    try:
        settings = settings_from_args(cls, ns)
        configure_logging(getattr(settings, "log_level", "info"))
        rc = fn(settings)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
