"""``python -m nblib._papermill``: papermill's command line, with two fixes and a shortcut.

jupyter_client waits for a kernel's reply with ``socket.poll(None)``; under pyzmq's
asyncio poller that wait can miss the wake-up for a message that has already arrived, and
then waits for ever (jupyter/nbclient#312: cells that open ipywidgets hung here in about
one run in 30, the kernel idle, the reply unread). A poll with a timeout ends with a
direct check of the socket, so here an unbounded wait is a loop of one-second waits: a
missed wake-up costs at most a second.

And a second: once the last cell has run, the kernel is stopped at once rather than
"gracefully". jupyter_client's graceful shutdown sends SIGINT and then a shutdown request;
ipykernel 7 sometimes loses that race and does not exit, and is sent SIGTERM only after
2.5 s (5 of 24 runs of a one-cell notebook here: +3 s each). Every output has arrived by then,
and a chapter writes its files (claims, caches) as it goes, never at exit.

The shortcut: nbformat imports jsonschema, which imports rfc3987_syntax where it is
installed (JupyterLab's jupyter-events pulls it in) to check the "iri" string format; that
module builds a parser as it is imported, 1.0 s of the 1.4 s papermill takes to import here,
paid by every chapter run. No notebook schema uses the "iri" format, so it is not imported.
"""

from __future__ import annotations

import queue
import runpy
import sys

sys.modules.setdefault("rfc3987_syntax", None)  # an ImportError for jsonschema, which then skips "iri"

from jupyter_client.channels import AsyncZMQSocketChannel  # noqa: E402 (after the line above)
from papermill.clientwrap import PapermillNotebookClient  # noqa: E402

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
_client_init = PapermillNotebookClient.__init__


def _stop_kernel_at_once(self, *args, **kwargs):
    kwargs.setdefault("shutdown_kernel", "immediate")
    _client_init(self, *args, **kwargs)


PapermillNotebookClient.__init__ = _stop_kernel_at_once

if __name__ == "__main__":
    runpy.run_module("papermill", run_name="__main__", alter_sys=True)
