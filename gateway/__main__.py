"""python -m gateway: the HTTP gateway (waitress) for portals and integrations."""

from __future__ import annotations

import logging
import sys

from waitress import serve

from gateway.app import create_app
from gateway.tokens import TokenFileError
from services.common.logs import setup_logging
from services.common.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging("gateway", settings.log_level)
    try:
        app = create_app(settings)
    except TokenFileError as exc:
        print(f"gateway: cannot read HONGLING_API_TOKENS_FILE: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    port = settings.gateway_port
    assert port is not None
    logging.getLogger("gateway").info("gateway serving HTTP on %s:%d", settings.host, port)
    serve(app, host=settings.host, port=port, threads=16, ident="hongling-gateway")


if __name__ == "__main__":
    main()
