"""``python -m organs.cortex serve [--host H] [--port P] [--delay-ms D]``: the embedded cortex as a standalone
server."""

from __future__ import annotations

import argparse
import sys

from organs.cortex.server import MAX_BODY_BYTES, serve


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; 2 with one error line on bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m organs.cortex", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve model nyx over the OpenAI-compatible API")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=31000, help="port to bind (default 31000)")
    serve_cmd.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help="largest request body accepted (larger: 413)",
    )
    serve_cmd.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="hold each chat completion this long, as an LLM would take (default 0)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: --port={args.port}: must be in 1..65535", file=sys.stderr)
        return 2
    if args.max_body_bytes <= 0:
        print(f"error: --max-body-bytes={args.max_body_bytes}: must be > 0", file=sys.stderr)
        return 2
    if not args.delay_ms >= 0:
        print(f"error: --delay-ms={args.delay_ms}: must be >= 0", file=sys.stderr)
        return 2
    serve(args.host, args.port, args.max_body_bytes, delay_s=args.delay_ms / 1000.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
