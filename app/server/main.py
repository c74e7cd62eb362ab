"""`radsynth serve`: run the engine as an authenticated HTTP/WebSocket service (uvicorn).

    radsynth serve [--host 127.0.0.1] [--port 8765] [--workspace DIR] [--data-root DIR ...]
                   [--token-file FILE] [--show-token] [--tls-cert PEM --tls-key PEM] [--insecure]
                   [--max-concurrent 1] [--max-upload-mb 2048] [--max-body-kb 1024]
                   [--max-extract-mb 8192] [--max-upload-files 20000] [--max-dataset-files 500000]
                   [--max-workspace-gb 1024]
    radsynth serve token new [--reader READER --study STUDY] | list | revoke ID   [--token-file FILE]

It binds 127.0.0.1 by default: from a laptop, reach it through an SSH tunnel
(``ssh -L 8765:127.0.0.1:8765 gpu-box``). Binding another address needs TLS (``--tls-cert`` and
``--tls-key``) or ``--insecure``, which prints a warning: the token would travel in clear text.
The bearer token is created on first start in a file only the owner can read, and printed then.
More tokens (admin, or reader tokens for one reader of one study) are issued, listed and revoked with
``radsynth serve token new|list|revoke`` (app/server/tokens.py); the running server sees the change at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from app.server.uploads import MAX_EXPANSION_RATIO

EXIT_OK, EXIT_USAGE = 0, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="radsynth serve", description="Run the engine as a service for a remote GPU box.",
                                epilog="Tokens: 'radsynth serve token new [--reader R --study S] | list | revoke ID' "
                                       "issues, lists and revokes tokens; the running server sees it at once.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: use an SSH tunnel)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one and prints it)")
    p.add_argument("--workspace", type=Path, help="server workspace (default: $RADSYNTH_WORKSPACE or the user data dir)")
    p.add_argument("--data-root", type=Path, action="append", default=[],
                   help="a folder clients may read datasets from (repeatable); uploads always go to WORKSPACE/uploads")
    p.add_argument("--token-file", type=Path, help="bearer token file (default: the user config dir); created 0600 if absent")
    p.add_argument("--show-token", action="store_true",
                   help="print the token (by default it is printed only when created, and only to a terminal)")
    p.add_argument("--tls-cert", type=Path, help="TLS certificate (PEM); required with --tls-key off loopback")
    p.add_argument("--tls-key", type=Path, help="TLS private key (PEM)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback address without TLS (not recommended)")
    p.add_argument("--max-concurrent", type=int, default=1, help="jobs run at once (default 1: one GPU job at a time)")
    p.add_argument("--max-upload-mb", type=float, default=2048, help="largest dataset upload in MiB (default 2048)")
    p.add_argument("--max-body-kb", type=float, default=1024, help="largest other request body in KiB (default 1024)")
    p.add_argument("--max-extract-mb", type=float, default=None,
                   help="most an upload may unpack to, in MiB (default 4x --max-upload-mb: 8192); an archive that "
                        f"expands {MAX_EXPANSION_RATIO}x or more is refused as a zip bomb whatever its size")
    p.add_argument("--max-upload-files", type=int, default=20_000,
                   help="most files one upload may hold (default 20000)")
    p.add_argument("--max-dataset-files", type=int, default=500_000,
                   help="most files one dataset (an ingest's source folder) may hold (default 500000)")
    p.add_argument("--max-workspace-gb", type=float, default=1024,
                   help="quota of the whole workspace in GiB: uploads and new jobs are refused past it (default 1024)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return p


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """The TCP socket handed to uvicorn (bound here so that port 0 can be printed before serving).

    It is created with ``proto=IPPROTO_TCP``: asyncio sets TCP_NODELAY on each accepted connection only
    when the socket says it is TCP (``asyncio.base_events._set_nodelay`` checks ``sock.proto``), and a
    socket made with proto 0 left Nagle's algorithm on, so every request on a reused connection waited
    for the client's delayed ACK (about 40 ms). TCP_NODELAY is also set on the listener, which Linux
    copies to accepted sockets.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["token"]:  # radsynth serve token new|list|revoke
        from app.server.tokens import main as token_main

        return token_main(argv[1:])
    ns_parser = build_parser()
    try:
        ns = ns_parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE

    if (ns.tls_cert is None) != (ns.tls_key is None):
        print("radsynth serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    tls = ns.tls_cert is not None
    for f in (ns.tls_cert, ns.tls_key):
        if f is not None and not f.is_file():
            print(f"radsynth serve: TLS file {f} does not exist", file=sys.stderr)
            return EXIT_USAGE
    if not is_loopback(ns.host) and not tls:
        if not ns.insecure:
            print(f"radsynth serve: refusing to bind {ns.host} without TLS. Give --tls-cert/--tls-key, or keep the "
                  "default 127.0.0.1 and use an SSH tunnel, or pass --insecure if you really mean it.", file=sys.stderr)
            return EXIT_USAGE
        print("\n" + "!" * 78 + f"\n!! WARNING: serving on {ns.host} WITHOUT TLS (--insecure). The bearer token and all\n"
              "!! medical images cross the network in clear text. Use an SSH tunnel or TLS instead.\n" + "!" * 78 + "\n",
              file=sys.stderr, flush=True)
    for root in ns.data_root:
        if not root.is_dir():
            print(f"radsynth serve: data root {root} is not a folder", file=sys.stderr)
            return EXIT_USAGE

    from app.engine import jobs as J
    from app.engine.store import Workspace
    from app.server.auth import default_token_file, load_or_create_token
    from app.server.tokens import TokenStoreError, read_store, store_path

    token_file = (ns.token_file or default_token_file()).expanduser()
    try:
        token, created = load_or_create_token(token_file)
        read_store(store_path(token_file))  # a store others can read is refused now, not at the first request
        workspace = Workspace.open(ns.workspace)
    except (OSError, ValueError, J.UserError, TokenStoreError) as exc:
        print(f"radsynth serve: {exc}", file=sys.stderr)
        return EXIT_USAGE

    import uvicorn

    from app.server.app import ServerConfig, create_app
    from app.server.logs import install_redaction

    install_redaction([token])  # before uvicorn configures its loggers: no record of this process holds the token

    J.cpu_threads_from_env()
    config = ServerConfig(workspace=workspace.root, token=token, data_roots=list(ns.data_root),
                          max_concurrent=ns.max_concurrent, max_upload_bytes=int(ns.max_upload_mb * 2**20),
                          max_body_bytes=int(ns.max_body_kb * 2**10), token_file=token_file,
                          max_extract_bytes=int(ns.max_extract_mb * 2**20) if ns.max_extract_mb else None,
                          max_upload_files=ns.max_upload_files, max_workspace_bytes=int(ns.max_workspace_gb * 2**30),
                          max_dataset_files=ns.max_dataset_files)
    app = create_app(config)

    sock = listening_socket(ns.host, ns.port)
    try:
        sock.bind((ns.host, ns.port))
    except OSError as exc:
        sock.close()
        print(f"radsynth serve: cannot bind {ns.host}:{ns.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    sock.listen(128)
    port = sock.getsockname()[1]
    scheme = "https" if tls else "http"
    host_text = f"[{ns.host}]" if ":" in ns.host else ns.host
    print(f"RadSynth server {scheme}://{host_text}:{port}  workspace {workspace.root}", flush=True)
    # the token is printed to a terminal only (or when asked): stdout sent to a file is a log, and logs hold no secret
    if ns.show_token or (created and sys.stdout.isatty()):
        print(f"token ({'new' if created else 'existing'}, kept in {token_file}): {token}", flush=True)
    else:
        print(f"token: {'new, ' if created else ''}in {token_file} (--show-token prints it)", flush=True)

    uconfig = uvicorn.Config(app, log_level=ns.log_level, ssl_certfile=str(ns.tls_cert) if tls else None,
                             ssl_keyfile=str(ns.tls_key) if tls else None, ws="websockets-sansio", lifespan="on",
                             ws_max_size=16 << 20, ws_per_message_deflate=False, timeout_graceful_shutdown=15)
    server = uvicorn.Server(uconfig)
    server.run(sockets=[sock])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
