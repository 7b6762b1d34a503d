"""``python -m organs.trails``: run the trail writer (``serve``), show an NPC's last decisions (``query``),
or turn the trails into fine-tuning examples (``export``, see ``organs.trails.export``).

::

    python -m organs.trails serve --url nats://127.0.0.1:4222 [--store runs/x/trails.sqlite | --dsn DSN]
    python -m organs.trails query --store runs/x/trails.sqlite --npc 7 --last 20
    python -m organs.trails export --store runs/x/trails.sqlite --out sft.jsonl [--kinds boundary]

``serve`` without ``--url`` (or ``NIMMERVERSE_BUS_URL``) starts an embedded nats-server; without
``--store``/``--dsn`` (or ``NIMMERVERSE_TRAILS_DSN``) it writes ``trails.sqlite`` in ``--run-dir``
(default: the current folder). Bad arguments, an unreachable bus and a store that cannot be opened
(or whose schema is newer than this code) end with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from nervous import subjects
from nervous.bus import BusError
from nervous.messages import TrailKind
from nervous.trail_stream import TrailStreamConfig, TrailStreamError
from organs.trails.config import TrailsConfig
from organs.trails.export import KINDS, OUTCOME_FILTERS, export, parse_date
from organs.trails.store import TrailStoreError, open_store, shown
from organs.trails.table import format_table


def _store_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", default="", help="SQLite file of the trails")
    where.add_argument("--dsn", default=os.environ.get("NIMMERVERSE_TRAILS_DSN", ""),
                       help="postgresql://user@host:port/db of a PostgreSQL store")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = TrailsConfig()
    run = commands.add_parser("serve", help="consume the trails stream into the store")
    run.add_argument("--url", default=os.environ.get("NIMMERVERSE_BUS_URL"),
                     help="nats://host:port (default: an embedded nats-server)")
    _store_args(run)
    run.add_argument("--run-dir", default=".", help="folder of the default trails.sqlite and embedded broker")
    run.add_argument("--batch-size", type=int, default=defaults.batch_size, help="events per commit at most")
    run.add_argument("--flush-interval-s", type=float, default=defaults.flush_interval_s,
                     help="longest an event waits for its commit")
    run.add_argument("--ack-wait-s", type=float, default=defaults.ack_wait_s,
                     help="seconds before an unacked event is delivered again")
    run.add_argument("--heartbeat-s", type=float, default=defaults.heartbeat_s,
                     help="seconds between heartbeats")
    run.add_argument("--max-age-s", type=float, default=defaults.stream.max_age_s,
                     help="stream: seconds an event waits for the writer at most")
    run.add_argument("--max-bytes", type=int, default=defaults.stream.max_bytes, help="stream: bytes at most")
    query = commands.add_parser("query", help="print an NPC's last trail events as a table")
    _store_args(query)
    query.add_argument("--npc", type=int, default=None, help="only this NPC")
    query.add_argument("--run", default=None, help="only this run")
    query.add_argument("--kind", choices=[k.value for k in TrailKind], default=None, help="only this kind")
    query.add_argument("--last", type=int, default=20, help="how many (newest), default 20")
    out = commands.add_parser("export", help="write fine-tuning examples (JSONL, TRL chat format with tools)")
    _store_args(out)
    out.add_argument("--out", required=True, help="the JSONL file to write (replaced whole)")
    out.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                     help="boundary (numbers -> situation), cortex (situation -> plan, paid off only)")
    out.add_argument("--outcome", choices=OUTCOME_FILTERS, default="any",
                     help="boundary examples: any valid one, or only escalations that paid off")
    out.add_argument("--stage", type=int, default=None, help="only events of worlds of this curriculum stage")
    out.add_argument("--run", default=None, help="only this run")
    out.add_argument("--since", default=None, help="only events decided at or after this ISO date (UTC)")
    out.add_argument("--until", default=None, help="only events decided before this ISO date (UTC)")
    return parser


def _export(args: argparse.Namespace) -> int:
    location = args.dsn or args.store
    if not location:
        raise ValueError("export needs --store PATH or --dsn postgresql://...")
    since = None if args.since is None else parse_date(args.since, "--since")
    until = None if args.until is None else parse_date(args.until, "--until")
    with open_store(location, create=False) as store:
        counts = export(store, args.out, args.kinds, args.outcome, args.run, since, until, args.stage)
    print(counts.summary(args.out))
    return 0


def _query(args: argparse.Namespace) -> int:
    location = args.dsn or args.store
    if not location:
        raise ValueError("query needs --store PATH or --dsn postgresql://...")
    if args.last < 1:
        raise ValueError(f"--last={args.last}: must be >= 1")
    with open_store(location, create=False) as store:
        records = store.last(npc=args.npc, n=args.last, run=args.run, kind=args.kind)
    if not records:
        who = f"npc {args.npc}" if args.npc is not None else "any NPC"
        print(f"no trail events for {who} in {shown(location)}")
        return 0
    print(format_table(records))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m organs.trails") -> int:
    """Command line of the trail writer and the trail query (``prog`` names the command in its usage)."""
    args = _parser(prog).parse_args(argv)
    try:
        subjects.env()
        if args.command == "query":
            return _query(args)
        if args.command == "export":
            return _export(args)
        from organs.trails.service import serve  # the bus only for the writer, not for a query

        logging.basicConfig(level=logging.INFO, format="%(asctime)s trail-writer %(levelname)s %(message)s")
        window = min(TrailStreamConfig().duplicate_window_s, args.max_age_s)
        stream = TrailStreamConfig(args.max_age_s, args.max_bytes, duplicate_window_s=window)
        config = TrailsConfig(
            store=args.store, dsn=args.dsn, batch_size=args.batch_size, stream=stream,
            flush_interval_s=args.flush_interval_s, ack_wait_s=args.ack_wait_s, heartbeat_s=args.heartbeat_s,
        )
        return asyncio.run(serve(config, config.location(args.run_dir), args.url, run_dir=args.run_dir))
    except (TrailStoreError, TrailStreamError, BusError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
