"""``python -m nblib._papermill``: papermill's command line, with one fix.

jupyter_client waits for a kernel's reply with ``socket.poll(None)``; under pyzmq's
asyncio poller that wait can miss the wake-up for a message that has already arrived, and
then waits for ever (jupyter/nbclient#312: cells that open ipywidgets hung here in about
one run in 30, the kernel idle, the reply unread). A poll with a timeout ends with a
direct check of the socket, so here an unbounded wait is a loop of one-second waits: a
missed wake-up costs at most a second.
"""

from __future__ import annotations

import queue
import runpy

from jupyter_client.channels import AsyncZMQSocketChannel

_get_msg = AsyncZMQSocketChannel.get_msg
SLICE_SECONDS = 1.0


async def _get_msg_in_slices(self, timeout: float | None = None):
    if timeout is not None:
        return await _get_msg(self, timeout)
    while True:
        try:
            return await _get_msg(self, SLICE_SECONDS)
        except queue.Empty:
            continue


AsyncZMQSocketChannel.get_msg = _get_msg_in_slices

if __name__ == "__main__":
    runpy.run_module("papermill", run_name="__main__", alter_sys=True)
