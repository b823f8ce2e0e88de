"""Baton's device client for Python: the generated `baton_ffi` bindings, plus iterators over
the client's listeners.

    from baton import BatonClient, Settings, status_updates

    client = BatonClient.open(Settings(sync_url="wss://baton.example.org/sync",
                                       store_path="baton.store", store_key=key))
    me = asyncio.run(client.sign_in(token))
    with status_updates(client) as updates:
        for status in updates:
            if status.synced:
                break

Each iterator is a context manager: leaving it (or `close()`) stops the listener.
"""

import queue
import typing

from baton_ffi import *  # noqa: F401,F403  (the generated API is this package's API)
from baton_ffi import BatonClient, RefusalListener, StatusListener, TaskListener

T = typing.TypeVar("T")


class Updates(typing.Generic[T]):
    """What a listener hears, as a blocking iterator. `next(timeout=…)` waits at most that long
    and raises `TimeoutError`."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[T]" = queue.Queue()
        self._listening = None

    def _push(self, item: T) -> None:
        self._queue.put(item)

    def next(self, timeout: typing.Optional[float] = None) -> T:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing heard within {timeout} s") from None

    def until(self, done: typing.Callable[[T], bool], timeout: float) -> T:
        """The first item `done` accepts, waiting at most `timeout` seconds in all."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            item = self.next(timeout=max(0.0, deadline - time.monotonic()))
            if done(item):
                return item

    def __iter__(self) -> "Updates[T]":
        return self

    def __next__(self) -> T:
        return self.next()

    def close(self) -> None:
        if self._listening is not None:
            self._listening.stop()

    def __enter__(self) -> "Updates[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Status(StatusListener):
    def __init__(self, updates: Updates) -> None:
        self.updates = updates

    def on_status(self, status) -> None:
        self.updates._push(status)


class _Task(TaskListener):
    def __init__(self, updates: Updates) -> None:
        self.updates = updates

    def on_change(self, change) -> None:
        self.updates._push(change)


class _Refusals(RefusalListener):
    def __init__(self, updates: Updates) -> None:
        self.updates = updates

    def on_refused(self, refused) -> None:
        self.updates._push(refused)


def status_updates(client: BatonClient) -> Updates:
    """The sync status now, then at every change."""
    updates: Updates = Updates()
    updates._listening = client.listen_status(_Status(updates))
    return updates


def task_changes(client: BatonClient, task_id: str) -> Updates:
    """Every change to a task from now on."""
    updates: Updates = Updates()
    updates._listening = client.listen_task(task_id, _Task(updates))
    return updates


def refusals(client: BatonClient) -> Updates:
    """Changes of this device's the server refused, as they are taken out."""
    updates: Updates = Updates()
    updates._listening = client.listen_refusals(_Refusals(updates))
    return updates
