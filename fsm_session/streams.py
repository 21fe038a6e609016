"""The events a session publishes: delivered in order to each subscriber's bounded stream, and
synchronously to the service's watchers (the live inspector)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio

from fsm_session.errors import SessionError
from fsm_session.events import Event

if TYPE_CHECKING:
    from fsm_session.service import SessionService

__all__ = ["EventStream", "EventsDropped", "Hub", "ServiceWatcher", "Watchers"]

log = logging.getLogger("fsm_session.service")


class EventsDropped(SessionError):
    """A subscriber fell more than its buffer behind; its stream was ended, not thinned."""

    code = "events_dropped"


class _Subscriber:
    __slots__ = ("overflowed", "send")

    def __init__(self, send: trio.MemorySendChannel[Event]) -> None:
        self.send = send
        self.overflowed = False


class EventStream:
    """Every event of the session, in order, from the moment of ``subscribe()``.

    Iterate with ``async for``. The stream ends when the service ends; if this subscriber falls
    more than ``ServiceConfig.event_buffer`` events behind, it ends with ``EventsDropped``
    instead of silently skipping events.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[Event], subscriber: _Subscriber) -> None:
        self._receive = receive
        self._subscriber = subscriber

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._subscriber.overflowed:
                raise EventsDropped("this subscriber fell too far behind", rule="R18") from None
            raise StopAsyncIteration from None

    def ready(self) -> list[Event]:
        """The events already delivered to this stream, taken without waiting."""
        events: list[Event] = []
        while True:
            try:
                events.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return events

    async def receive(self) -> Event:
        """The next event (``StopAsyncIteration`` when the stream has ended)."""
        return await self.__anext__()


class Hub:
    """The subscribers of one session, and the publishing of its events to them."""

    __slots__ = ("_changed", "subscribers")

    def __init__(self) -> None:
        self.subscribers: list[_Subscriber] = []
        self._changed: trio.Event | None = None

    def changed(self) -> trio.Event:
        """Set at the next event published (for waits on a condition of the session)."""
        if self._changed is None:
            self._changed = trio.Event()
        return self._changed

    def subscribe(
        self, size: int
    ) -> tuple[EventStream, _Subscriber, trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](size)
        subscriber = _Subscriber(send)
        self.subscribers.append(subscriber)
        return EventStream(receive, subscriber), subscriber, receive

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        # Unsubscribe before closing, with no checkpoint between: a publish in between would
        # find the receiving end closed.
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)
        subscriber.send.close()

    def publish(self, event: Event) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()
        if not self.subscribers:
            return
        for subscriber in list(self.subscribers):
            try:
                subscriber.send.send_nowait(event)
            except trio.WouldBlock:
                subscriber.overflowed = True
                subscriber.send.close()
                self.subscribers.remove(subscriber)

    def end(self) -> None:
        for subscriber in self.subscribers:
            subscriber.send.close()
        self.subscribers.clear()


class ServiceWatcher(Protocol):
    """Sees services' events as they happen, such as the live inspector (``fsm_session.inspector``).

    ``follow`` is called once, as the service starts, and calls ``service.watch(self)``. Then
    ``service_event`` is called synchronously with every event the service publishes (after its
    machine moved, so ``service.last_transition`` is the row taken), and ``service_ended`` once
    when the service ends. None may wait; one that raises is logged and detached, and the service
    goes on as if it were not there.
    """

    def follow(self, service: SessionService) -> None: ...

    def service_event(self, service: SessionService, event: Event) -> None: ...

    def service_ended(self, service: SessionService) -> None: ...


class Watchers:
    """The watchers of one service. Each is called inside the machine's move, where an error
    would leave the session between two states: one that raises is logged once and detached."""

    __slots__ = ("_all",)

    def __init__(self) -> None:
        self._all: tuple[ServiceWatcher, ...] = ()

    def __bool__(self) -> bool:
        return bool(self._all)

    def add(self, watcher: ServiceWatcher) -> None:
        self._all = (*self._all, watcher)

    def event(self, service: SessionService, event: Event) -> None:
        for watcher in self._all:
            try:
                watcher.service_event(service, event)
            except Exception:
                self._detach(watcher)

    def ended(self, service: SessionService) -> None:
        for watcher in self._all:
            try:
                watcher.service_ended(service)
            except Exception:
                self._detach(watcher)

    def _detach(self, watcher: ServiceWatcher) -> None:
        log.exception("a service watcher failed and is detached: %r", watcher)
        self._all = tuple(other for other in self._all if other is not watcher)
