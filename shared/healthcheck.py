"""``python -m shared.healthcheck``: exit 0 when a health endpoint answers 200.

For supervisors that have no HTTP client of their own: systemd's
``ExecStartPost`` (a unit counts as started once the service answers), the
container image's ``HEALTHCHECK`` and the compose file's healthchecks (the
slim Python image has no curl). Standard library only.

The target is a URL, or ``hub`` / ``edge``: the service's own address from its
environment (``GOLDENHOUR_HUB_HTTP_HOST``/``_PORT``, default 127.0.0.1:8000;
``GOLDENHOUR_EDGE_HTTP_HOST``/``_PORT``, where an unset port means the crew
page, and so the endpoint, is off: nothing to check, exit 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"hub": "8000", "edge": ""}


def service_url(service: str, path: str, environ: dict[str, str] | None = None) -> str | None:
    """The URL of ``path`` on ``service`` (hub or edge) from its environment;
    None when the service serves no HTTP."""
    env = os.environ if environ is None else environ
    prefix = f"GOLDENHOUR_{service.upper()}_"
    port = env.get(prefix + "HTTP_PORT", DEFAULT_PORTS[service]).strip()
    if not port:
        return None
    host = env.get(prefix + "HTTP_HOST", "127.0.0.1").strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # bound everywhere: ask over loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def check(url: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """GET ``url``: (answered 200, a short description of the answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http only)
            body = response.read(300).decode("utf-8", "replace")
            return response.status == 200, f"{response.status} {body}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read(300).decode('utf-8', 'replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer: {exc}"


def main(argv: list[str] | None = None) -> int:
    """Check once, or poll for up to ``--wait`` seconds; 0 when healthy, 1 if not."""
    parser = argparse.ArgumentParser(prog="python -m shared.healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a URL, or 'hub' or 'edge' (address from the environment)")
    parser.add_argument("--path", default="/health/live", help="with hub or edge (default %(default)s)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="keep trying for this many seconds (default: one try)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    args = parser.parse_args(argv)
    if args.target in DEFAULT_PORTS:
        url = service_url(args.target, args.path)
        if url is None:
            sys.stdout.write(f"healthcheck: {args.target} serves no HTTP (port unset); nothing to check\n")
            return 0
    else:
        url = args.target
    deadline = time.monotonic() + args.wait
    while True:
        healthy, answer = check(url, args.timeout)
        if healthy or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    (sys.stdout if healthy else sys.stderr).write(f"healthcheck: {url}: {answer.strip()[:300]}\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
