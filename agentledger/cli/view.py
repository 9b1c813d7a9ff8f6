"""``agentledger view``: serve the local, read-only web viewer over the store."""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import socket
from urllib.parse import quote

import click

from agentledger.cli.errors import UserError
from agentledger.cli.options import AppState, pass_state
from agentledger.cli.output import echo

DEFAULT_PORT = 8765
INSTALL_HINT = "pip install 'agentledger[view]'"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``, or a one-line error naming the fix."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"--host {host}: no such address; give an IP address or a name") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise UserError(
                f"--port {port}: the port is in use on {host}; pass another --port "
                "(or --port 0 for any free one)"
            ) from None
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
            "choose another address or port"
        ) from None
    return sock


@click.command("view")
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Event store to show (as the global --store) [default: the global --store, "
    "AGENTLEDGER_STORE, or .agentledger/ledger.db].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on. Any address other than loopback needs an access token "
    "(--token, or one is generated and printed).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="AGENTLEDGER_VIEW_TOKEN",
    help="Access token every request must present (?token= once, then a cookie; or an "
    "'Authorization: Bearer' header) [env AGENTLEDGER_VIEW_TOKEN].",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the viewer in a web browser.")
@click.option(
    "--as-of",
    metavar="POSITION|ISO-TIME",
    help="Show every page as the log stood at this position or UTC time.",
)
@pass_state
def view(
    state: AppState,
    store_url: str | None,
    port: int,
    host: str,
    token: str | None,
    open_browser: bool,
    as_of: str | None,
) -> None:
    """Serve a local web viewer of the log: experiments and sessions, each experiment's
    figures, charts, failures, integrity and trace matrix, each trace's timeline, model
    calls and raw events, diffs of two experiments, and running experiments live.

    Read-only: the store is opened read-only and nothing is ever written. Stop with
    Ctrl-C.
    """
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise UserError(
            f"agentledger view needs the web stack ({exc.name} is not installed): {INSTALL_HINT}"
        ) from None
    from agentledger.eventstore.envelope import utc_now
    from agentledger.view.app import create_app
    from agentledger.view.errors import BadRequestError
    from agentledger.view.listing import log_point

    if token is not None and not token.strip():
        raise UserError("--token is empty; give a token or leave --token out")
    generated = False
    if not is_loopback(host) and token is None:
        token = secrets.token_urlsafe(24)
        generated = True
    if store_url:
        state = dataclasses.replace(state, store_url=store_url)
    store = state.read_store()
    try:
        until = None
        if as_of is not None:
            try:
                until = log_point(store, as_of, utc_now())
            except BadRequestError as exc:
                raise UserError(str(exc)) from None
        sock = _bind(host, port)
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}/"
        allowed = None if not is_loopback(host) else ["127.0.0.1", "localhost", "[::1]"]
        app = create_app(store, until=until, token=token, allowed_hosts=allowed)
        point = f" as of position {until}" if until is not None else ""
        echo(f"agentledger view of {store.location.display()}{point} (read-only)")
        if token is not None:
            where = "generated" if generated else "given"
            reach = "" if is_loopback(host) else f"{host} is reachable from other machines: "
            echo(f"{reach}every request needs the {where} access token.")
            if generated:
                echo(f"Token: {token}")
            url = f"{url}?token={quote(token, safe='')}"
        echo(f"Open {url}  (Ctrl-C to stop)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=2,  # live streams never end by themselves
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
