"""Loopback pod addresses of the emulated kubelet (sandbox/kube/podnet.py): no two clusters
on one machine, in one process or several, hand out the same address.

Each kubelet's pods listen on addresses of its own 127.N.0.0/16. The block used to be
drawn at random with nothing held, so two test workers' clusters drew the same block
about once in 250 pairs; a pod whose address another cluster's pod listened on then
never became ready (a CI run lost two spawns to it).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio.client import ApiClient

from sovereign_hub.sandbox.kube import podnet
from sovereign_hub.sandbox.kube.kubelet import ProcessKubelet
from sovereign_hub.sandbox.kube.lightpod import LightServer
from sovereign_hub.sandbox.kube.podnet import LoopbackAddresses, reserve_block

HOLD_IN_ANOTHER_PROCESS = """
import sys
from sovereign_hub.sandbox.kube.podnet import reserve_block
block, holder = reserve_block(int(sys.argv[1]))
print(block, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def same_draw(monkeypatch):
    """Every kubelet draws the blocks in the same order, as two unlucky random draws would."""
    monkeypatch.setattr(podnet.secrets.SystemRandom, "shuffle", lambda self, items: None)


def block_of(address: str) -> int:
    return int(address.split(".")[1])


def test_two_kubelets_that_draw_the_same_block_get_different_ones(same_draw):
    first, second = LoopbackAddresses(), LoopbackAddresses()
    try:
        ours = {first.allocate() for _ in range(600)}
        theirs = {second.allocate() for _ in range(600)}
        assert not ours & theirs
        assert {block_of(a) for a in ours} != {block_of(a) for a in theirs}
    finally:
        first.close()
        second.close()


def test_a_block_closed_is_free_again(same_draw):
    first = LoopbackAddresses()
    block = block_of(first.allocate())
    first.close()
    again = LoopbackAddresses()
    try:
        assert block_of(again.allocate()) == block
    finally:
        again.close()


def test_a_block_held_by_another_process_is_skipped_and_refused_by_name(same_draw):
    """The hold is the kernel's (a listening socket), so it binds other processes too."""
    free, holder = reserve_block()  # the block the draw would give first, now free again
    holder.close()
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, str(free)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == str(free)
        ours = LoopbackAddresses()
        try:
            assert block_of(ours.allocate()) != free
        finally:
            ours.close()
        with pytest.raises(RuntimeError, match=rf"127\.{free}\.0\.0/16 are held by another"):
            LoopbackAddresses(block=free)
    finally:
        other.communicate("")
    # The other process exited: its hold went with it.
    LoopbackAddresses(block=free).close()


def test_the_kubelet_gives_its_block_back_when_it_shuts_down(same_draw, tmp_path: Path):
    async def run() -> None:
        async with ApiClient() as api:
            kubelet = ProcessKubelet(api, nodes={"node-1"}, state_dir=tmp_path)
            block = block_of(kubelet.network.allocate())
            with pytest.raises(RuntimeError, match="held by another kubelet"):
                LoopbackAddresses(block=block)
            await kubelet.shutdown()
            LoopbackAddresses(block=block).close()

    asyncio.run(run())


def test_a_light_pod_whose_address_is_taken_exits_1_and_says_why():
    """As jupyter-server exits when its port is taken, so the kubelet reports a failed
    container (and restarts it by policy) instead of a pod that stays Pending unexplained."""

    async def run() -> None:
        taken = socket.socket()
        taken.bind(("127.9.0.2", 0))  # another cluster's pod on the same address
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {"JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{port}/user/ana/"}
        try:
            async with aiohttp.ClientSession() as session:
                server = LightServer(env, "127.9.0.2", session)
                failure = await server.start()
                assert failure is not None
                assert f"could not listen on 127.9.0.2:{port}" in failure
                assert await asyncio.wait_for(server.wait(), 5) == 1
        finally:
            taken.close()

    asyncio.run(run())
