"""JupyterHub's count of active servers, stock against ours, at 5,000 users logged in.

JupyterHub counts the active and pending servers at every spawn request
(``UserDict.count_active_users``). Stock, it asks every spawner of every cached
user; ours (``spawner/activecount.py``) asks only the spawners that may be active.
Both counts run here on real JupyterHub users, spawners and database rows
(SQLite in memory): ``--users`` users who have each opened the home page (one
idle spawner each), of whom ``--active`` have a spawn pending, as in the middle
of a Monday-morning burst.

- *stock*: stock KubeSpawner spawners, JupyterHub's own count;
- *ours*: Sovereign spawners, the count the hub uses with them.

Both counts must agree with JupyterHub's scan of the same users (checked on
every run). Reported: milliseconds per count (median of ``--repeat``) and the
ratio stock/ours.

Run: `make bench` or `python benchmarks/bench_active_count.py [--users N] [--active N] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import UserDict
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner

from sovereign_hub.sandbox.kube.cluster import write_kubeconfig
from sovereign_hub.spawner.spawner import SovereignSpawner


class Ours(SovereignSpawner):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_mock=True, **kwargs)


class Stock(KubeSpawner):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_mock=True, **kwargs)


def logged_in(spawner_class: type, users: int, active: int) -> UserDict:
    """``users`` users with one spawner each (the home page makes it), ``active`` of them
    with a spawn pending."""
    db = orm.new_session_factory("sqlite:///:memory:")()
    cache = UserDict(lambda: db, {"spawner_class": spawner_class, "hub": Hub(), "db": db})
    for i in range(users):
        db.add(orm.User(name=f"user{i:05d}"))
    db.commit()
    for i, orm_user in enumerate(db.query(orm.User).order_by(orm.User.name)):
        spawner = cache.add(orm_user).spawners[""]
        if i < active:
            spawner._spawn_pending = True
    return cache


def timed(count: Any, users: UserDict, repeat: int) -> tuple[float, dict[str, int]]:
    times, counts = [], {}
    for _ in range(repeat):
        start = time.perf_counter()
        counts = dict(count(users))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, counts


async def measure(users: int, active: int, repeat: int) -> dict[str, Any]:
    scan = UserDict.count_active_users.__wrapped__  # type: ignore[attr-defined]
    result: dict[str, Any] = {"users": users, "active": active, "repeat": repeat}
    for name, spawner_class in (("stock", Stock), ("ours", Ours)):
        cache = logged_in(spawner_class, users, active)
        ms, counts = timed(UserDict.count_active_users, cache, repeat)
        _, scanned = timed(scan, cache, 1)
        if counts != scanned or counts.get("spawn_pending") != active:
            raise SystemExit(f"{name}: the count {counts} is not JupyterHub's {scanned}")
        result[name] = {"ms_per_count": round(ms, 3), "counts": counts}
    result["ratio_stock_over_ours"] = round(
        result["stock"]["ms_per_count"] / result["ours"]["ms_per_count"], 1
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000, help="users logged in")
    parser.add_argument("--active", type=int, default=1000, help="of them, spawning")
    parser.add_argument("--repeat", type=int, default=50, help="counts timed per side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 <= args.active <= args.users:
        parser.error(f"--active must be between 0 and --users ({args.users}), not {args.active}")
    with tempfile.TemporaryDirectory() as tmp:
        # KubeSpawner loads a kubeconfig when it builds a spawner; nothing is asked of it.
        path = write_kubeconfig(Path(tmp) / "kubeconfig", "http://127.0.0.1:9", "unused", "hub")
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
        result = asyncio.run(measure(args.users, args.active, args.repeat))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"count_active_users, {result['users']} users logged in, {result['active']} spawning "
        f"(median of {result['repeat']}):"
    )
    for name in ("stock", "ours"):
        print(f"  {name:5s} {result[name]['ms_per_count']:8.3f} ms per count")
    print(f"  ratio stock/ours: {result['ratio_stock_over_ours']}x")


if __name__ == "__main__":
    main()
