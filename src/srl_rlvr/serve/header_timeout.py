"""Close connections that do not finish sending a request's headers in time (slow-loris).

uvicorn bounds the idle time between requests (`timeout_keep_alive`) but not the time a client takes
to send the headers themselves: a client trickling one header byte at a time holds a connection for
as long as it likes, and a few hundred such clients exhaust the server's sockets. uvicorn has no
setting for it, so this is its h11 protocol with one timer added: armed when a connection opens and
after each response, it closes the connection when it fires while the request's headers are still
incomplete (h11 still waits for them).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers take over `timeout_s`."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.logger.debug("closing a connection whose request headers took over %g s", timeout_s)
                self.transport.close()

    return HeaderTimeoutProtocol
