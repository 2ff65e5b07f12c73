"""`gprec serve RUN_DIR`: a finished run as an HTTP service, FastAPI on uvicorn
(`gprec.serving.app`; needs the `serve` extra: pip install 'gprec[serve]')."""

from __future__ import annotations

from gprec.cli.common import add_rebuild_catalogue

# The library's defaults (gprec.serving.app), spelled out so that --help imports nothing heavy.
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_USERS = 1_000
DEFAULT_MAX_BODY_BYTES = 8 * 2**20


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a finished run over HTTP: /predict, /recommend, /health (FastAPI)",
        description="Load a finished run once and serve it over HTTP with uvicorn: POST "
        "/predict scores rows given as JSON objects with the run's columns (the numbers gprec "
        "predict gives), POST /recommend gives users' top k items (as gprec recommend), GET "
        "/health says what is served. The OpenAPI spec is at /openapi.json, its pages at "
        "/docs. Malformed requests get 422 naming the field, unknown users 404, oversized "
        "requests 413. Needs fastapi and uvicorn: pip install 'gprec[serve]'.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"rows in one /predict request; more is refused (default {DEFAULT_MAX_ROWS:,d})",
    )
    p.add_argument(
        "--max-users",
        type=int,
        default=DEFAULT_MAX_USERS,
        metavar="N",
        help=f"users in one /recommend request; more is refused (default {DEFAULT_MAX_USERS:,d})",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help=f"request body size; larger is refused unread (default {DEFAULT_MAX_BODY_BYTES:,d})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch intra-op threads (default 1: requests are scored in parallel by the "
        "server's threadpool; more helps the latency of large single requests)",
    )
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    add_rebuild_catalogue(p)
    p.set_defaults(handler=handle)


def handle(args) -> int:
    import socket

    from gprec.cli.common import echo
    from gprec.errors import ConfigError

    for option, value in (
        ("--max-rows", args.max_rows),
        ("--max-users", args.max_users),
        ("--max-body-bytes", args.max_body_bytes),
        ("--threads", args.threads),
    ):
        if value < 1:
            raise ConfigError(f"{option} must be at least 1, not {value}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, not {args.port}")
    try:
        import uvicorn

        from gprec.serving.app import create_app
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"gprec serve needs {e.name}, which is not installed: pip install 'gprec[serve]'"
        ) from None
    # Refuse a port that is taken before loading the model (uvicorn would log it and exit 1).
    try:
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {args.host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {args.host}:{args.port} ({e.strerror or e})"
            ) from None
    app = create_app(
        args.run_dir,
        max_rows=args.max_rows,
        max_users=args.max_users,
        max_body_bytes=args.max_body_bytes,
        threads=args.threads,
        rebuild_catalogue=args.rebuild_catalogue,
    )
    served = "/predict, /recommend" if app.state.recommender is not None else "/predict"
    echo(f"serving {args.run_dir} ({served}, /health) on http://{args.host}:{args.port}")
    if app.state.recommender is None:
        echo(f"gprec: warning: no /recommend: {app.state.recommend_unavailable}")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        log_level="info",
    )
    return 0
