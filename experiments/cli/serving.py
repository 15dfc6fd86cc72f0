"""``sched-env serve``: the scheduling service (stateless routes and shop sessions) on one process,
its settings handed to the app as one typed object."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from experiments.cli.common import UserError, port, positive_int, positive_seconds


def add_commands(sub) -> None:
    p = sub.add_parser("serve", help="the scheduling microservice (HTTP/JSON) on the shipped policies and every decider",
                       description="Serve plans over HTTP (and MQTT with --mqtt). One process owns the shop sessions"
                       " of its --db; scale with replicas, each on its own database. The bearer token comes from"
                       " $SCHED_ENV_TOKEN (never the command line). Ctrl-C stops.")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    p.add_argument("--model", help="static-shop policy file for `policy` (default: the shipped one)")
    p.add_argument("--models", metavar="DIR", help="a folder of model files: NAME.onnx there is `policy@NAME` in requests"
                   " and shops, read when used (copy one in while serving; no restart). Default $SCHED_ENV_MODELS")  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=2, help="decider threads (default 2)")
    p.add_argument(
        "--queue", type=int, default=16, help="requests that may wait for a thread; more get 503 (default 16)"
    )
    p.add_argument("--access-log", action="store_true", help="log every request (method, path, status) to stderr")
    p.add_argument(
        "--header-timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds a client has to send its request line and headers; slower ones are closed (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds a client has to send its body (408); bodies over 8 MiB get 413 as the bytes arrive,"
        " chunked or not (default 30)",
    )
    p.add_argument("--readers-per-client", type=positive_int, default=8,
                   help="slow request bodies (still arriving after 1 s) one client address may have (32 bodies in all);"
                        " more get 503 (default 8; behind a reverse proxy every client has its address: raise it to 32)")  # fmt: skip
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=256,
        help="open connections; one more gets 503 and is closed (default 256)",
    )
    p.add_argument(
        "--public-metrics",
        action="store_true",
        help="serve /metrics without the token (for a scraper on a trusted network); by default, when"
        " SCHED_ENV_TOKEN is set, every route but /healthz, /readyz and /docs needs it",
    )
    p.add_argument("--db", help="the shop sessions' SQLite file (WAL; every acknowledged event is on disk), default"
                        " $SCHED_ENV_DB or ~/.local/share/sched-env/shops.sqlite3")  # fmt: skip
    p.add_argument("--mqtt", metavar="HOST:PORT", help="bridge shop events and plans through this MQTT broker")
    p.add_argument("--mqtt-client-id", help="the bridge's MQTT client id (default: derived from --db; the broker"
                                            " keeps its session, so keep it fixed across restarts)")  # fmt: skip
    p.add_argument("--mqtt-topic-root", default="sched-env",
                   help="the topics' first level(s): ROOT/shops/<id>/events in, .../plan and .../errors out (default"
                        " sched-env); servers sharing a broker each take their own")  # fmt: skip
    p.add_argument("--mqtt-username", help="the bridge's broker login; its password comes from"
                                           " $SCHED_ENV_MQTT_PASSWORD or --mqtt-password-file (never the command line)")  # fmt: skip
    p.add_argument("--mqtt-password-file", help="a file holding the bridge's broker password (one line)")
    p.add_argument("--mqtt-ca", help="TLS to the broker: its CA certificate (PEM); TLS is on with any --mqtt-ca/-cert")
    p.add_argument("--mqtt-cert", help="TLS client certificate (PEM) for a broker that asks for one; with --mqtt-key")
    p.add_argument("--mqtt-key", help="the client certificate's private key (PEM)")
    p.add_argument("--opcua", action="append", default=[], metavar="MAPPING.toml",
                   help="bridge a machine's OPC UA server to a shop session through this mapping file (node ids ->"
                        " equipment status, operations, work-order fields; the README has an example); repeatable")  # fmt: skip
    p.add_argument("--shop-rate", type=float, default=50.0,
                   help="event batches per second one shop may send (HTTP requests and MQTT messages alike); more"
                        " get 429 (default 50)")  # fmt: skip
    p.add_argument("--max-shop-budget-ms", type=positive_int, default=10_000,
                   help="the longest budget_ms a shop session may ask (default 10000); replans over 1 s never take"
                        " the last decider thread, so shops planning in milliseconds never wait behind them")  # fmt: skip
    p.set_defaults(func=run_serve)


def _settings(args: argparse.Namespace, db: Path):
    from service.app import ConfigurationError, Settings

    if args.model and not Path(args.model).is_file():
        raise UserError(f"--model {args.model}: no such file")
    models_dir = args.models or os.environ.get("SCHED_ENV_MODELS") or None
    if models_dir and not Path(models_dir).is_dir():
        raise UserError(f"--models {models_dir}: no such folder")
    try:
        return Settings(
            workers=args.threads, queue=args.queue, token=os.environ.get("SCHED_ENV_TOKEN"),
            readers_per_client=args.readers_per_client,
            static_model=str(Path(args.model).resolve()) if args.model else None, body_timeout_s=args.body_timeout,
            public_metrics=args.public_metrics, db=str(db.resolve()), mqtt=args.mqtt,
            mqtt_client_id=args.mqtt_client_id, mqtt_topic_root=args.mqtt_topic_root, shop_rate=args.shop_rate, max_shop_budget_ms=args.max_shop_budget_ms,
            mqtt_username=args.mqtt_username, mqtt_password=_mqtt_password(args), mqtt_ca=_file(args.mqtt_ca, "--mqtt-ca"),
            mqtt_cert=_file(args.mqtt_cert, "--mqtt-cert"), mqtt_key=_file(args.mqtt_key, "--mqtt-key"),
            opcua=tuple(_file(path, "--opcua") for path in args.opcua),
            models_dir=str(Path(models_dir).resolve()) if models_dir else None,
        )  # fmt: skip
    except ConfigurationError as error:
        raise UserError(str(error)) from None


def _file(path: str | None, option: str) -> str | None:
    if path is not None and not Path(path).is_file():
        raise UserError(f"{option} {path}: no such file")
    return None if path is None else str(Path(path).resolve())


def _mqtt_password(args: argparse.Namespace) -> str | None:
    """The broker password from --mqtt-password-file or $SCHED_ENV_MQTT_PASSWORD (a command line is
    visible to every user of the machine, so it is never taken from there)."""
    if args.mqtt_password_file:
        try:
            password = Path(args.mqtt_password_file).read_text().strip()
        except OSError as error:
            raise UserError(f"--mqtt-password-file {args.mqtt_password_file}: {error.strerror or error}") from None
    else:
        password = os.environ.get("SCHED_ENV_MQTT_PASSWORD")
    if password is not None and args.mqtt_username is None:
        raise UserError("an MQTT password is given but no --mqtt-username: give the login it belongs to")
    if args.mqtt_username is not None and not password:
        raise UserError(f"--mqtt-username {args.mqtt_username}: set its password in $SCHED_ENV_MQTT_PASSWORD or"
                        " --mqtt-password-file")  # fmt: skip
    return password


def _listen(host: str, number: int) -> socket.socket:
    """The listening socket, bound now: a busy port or a wrong address is one line, before any 'listening'."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (a 0 here left
    # Nagle on for every connection, and each small answer waited ~40 ms for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, number))
    except OSError as error:
        sock.close()
        raise UserError(f"--host {host} --port {number}: cannot listen there ({error.strerror or error})") from None
    sock.set_inheritable(True)
    return sock


def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from service.app import create_app, load_models
        from service.protocol import GuardedH11Protocol
        from service.store import EventStore, StoreError, default_path
    except ImportError as error:
        raise UserError(
            f"serving needs the service extra ({error.name} is missing): pip install 'sched-env[service]'"
        ) from None
    db = Path(args.db) if args.db else default_path()
    try:
        EventStore(db).close()  # another server on it, or not a database: one line now, not a traceback later
    except StoreError as error:
        raise UserError(str(error)) from None
    settings = _settings(args, db)
    load_models(settings)  # a missing or corrupt model stops here, in one line
    sock = _listen(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"serving on {args.host}: reachable from other machines" + ("" if settings.token else
              "; set SCHED_ENV_TOKEN to require a bearer token"))  # fmt: skip
    host = f"[{args.host}]" if ":" in args.host else args.host
    mqtt = f"; MQTT: {args.mqtt} (sched-env/shops/+/events in, .../plan out)" if args.mqtt else ""
    print(f"sched-env serve: listening on http://{host}:{args.port} (API docs: /docs, health: /healthz,"
          f" metrics: /metrics; {args.threads} decider threads); shops in {db}{mqtt}; Ctrl-C stops", flush=True)  # fmt: skip
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("sched_env").setLevel(logging.INFO)
    protocol = GuardedH11Protocol.with_limits(args.header_timeout, args.body_timeout, args.max_connections)
    config = uvicorn.Config(create_app(settings), http=protocol, timeout_keep_alive=5, access_log=args.access_log,
                            log_level="info" if args.access_log else "warning")  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
    return 0
