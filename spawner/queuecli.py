"""``sovhub gpu-queue list``: the hub's GPU queue per GPU type and region, for admins.

Read through JupyterHub's REST API: each waiting spawn keeps its place in its
server's state (``state.sovereign.queued``), which the API shows to a token
with the ``admin:server_state`` scope. The order is rebuilt with the same
:class:`~.fairqueue.FairQueue` the hub uses, so positions match the ones users
see. It talks to the hub with the standard library; importing the spawner
package needs the ``hub`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

from .fairqueue import FairQueue, Waiter


def waiters_from_users(users: Iterable[Mapping[str, Any]]) -> FairQueue:
    """The queue as the users' server states describe it."""
    queue = FairQueue()
    for user in users:
        for server in (user.get("servers") or {}).values():
            queued = ((server.get("state") or {}).get("sovereign") or {}).get("queued")
            if not queued:
                continue
            try:
                waiter = Waiter.from_state(queued["waiter"])
            except (KeyError, ValueError, TypeError):
                continue
            queue.restore(queued.get("clock") or {}, [waiter])
    return queue


def render(queue: FairQueue, now: float) -> str:
    """One block per GPU type and region: position, user, server, group, GPUs, time waited."""
    if not len(queue):
        return "The GPU queue is empty.\n"
    lines: list[str] = []
    pools = sorted({w.pool for w in queue.waiters()})
    for pool in pools:
        mine = [w for w in queue.order() if w.pool == pool]
        lines.append(f"{pool.gpu_type} in {pool.region}: {len(mine)} waiting")
        lines.append(f"  {'#':>3}  {'user':<24} {'server':<12} {'group':<24} gpus  waited")
        for i, w in enumerate(mine, 1):
            waited = int(max(0.0, now - w.since))
            lines.append(
                f"  {i:>3}  {w.user:<24} {w.server or '-':<12} {w.group:<24} {w.gpus:>4}  "
                f"{waited // 60}m{waited % 60:02d}s"
            )
    return "\n".join(lines) + "\n"


def fetch_users(hub: str, token: str) -> list[dict[str, Any]]:
    """Every user with an active (running or pending) server, page by page."""
    users: list[dict[str, Any]] = []
    offset = 0
    while True:
        url = f"{hub.rstrip('/')}/hub/api/users?state=active&offset={offset}&limit=200"
        request = urllib.request.Request(  # noqa: S310 - the admin names their own hub URL
            url,
            headers={
                "Authorization": f"token {token}",
                "Accept": "application/jupyterhub-pagination+json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            page = json.load(response)
        items = page["items"] if isinstance(page, dict) else page
        users.extend(items)
        following = (page.get("_pagination") or {}).get("next") if isinstance(page, dict) else None
        if not following:
            return users
        offset = int(following["offset"])


def cmd_list(args: argparse.Namespace) -> int:
    token = (
        Path(args.token_file).read_text().strip()
        if args.token_file
        else os.environ.get("JUPYTERHUB_API_TOKEN", "")
    )
    if not token:
        print(
            "sovhub gpu-queue: give a token with the admin:server_state scope "
            "(--token-file FILE or $JUPYTERHUB_API_TOKEN)",
            file=sys.stderr,
        )
        return 2
    try:
        users = fetch_users(args.hub, token)
    except HTTPError as exc:
        print(f"sovhub gpu-queue: {args.hub} answered {exc.code} {exc.reason}", file=sys.stderr)
        return 1
    except URLError as exc:
        print(f"sovhub gpu-queue: cannot reach {args.hub}: {exc.reason}", file=sys.stderr)
        return 1
    queue = waiters_from_users(users)
    if args.json:
        # Every waiter of order() is queued, so each has a place.
        places = [(w, queue.place(w.key)) for w in queue.order()]
        out = [{**w.to_state(), "position": p.position} for w, p in places if p is not None]
        print(json.dumps(out, indent=2))
    else:
        sys.stdout.write(render(queue, time.time()))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "gpu-queue", help="list the GPU queue per GPU type and region", description=__doc__
    )
    actions = group.add_subparsers(dest="action", required=True)
    parser = actions.add_parser(
        "list", help="the waiting spawns per GPU type and region, in the order the hub admits"
    )
    parser.add_argument("--hub", required=True, help="the hub's URL, e.g. https://hub.example")
    parser.add_argument(
        "--token-file",
        help="file holding an API token with the admin:server_state scope "
        "(default: $JUPYTERHUB_API_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=cmd_list)
