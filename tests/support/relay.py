"""An HTTP(S) relayer (`worker.relay_http`) served in threads on 127.0.0.1 for the relay tests."""

from __future__ import annotations

import ssl
import threading

from tests.support.node import NodeNet
from worker.relay_http import Limits, RelayHTTPServer, RelayService, serve


class Relayer:
    """A relayer serving on 127.0.0.1 (a free port) in threads, over TLS when given a context; ``close()`` stops it."""

    def __init__(self, net: NodeNet, key: str, limits: Limits, *, tls: ssl.SSLContext | None = None) -> None:
        reader = net.client()
        reader.view_block = "pending"
        self.service = RelayService(net.client(key), reader=reader, limits=limits, say=lambda _m: None)
        self.server: RelayHTTPServer = serve(self.service, "127.0.0.1", 0, tls=tls)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = self.server.url

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.service.stop()
        self.thread.join(10)
