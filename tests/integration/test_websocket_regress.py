#!/usr/bin/python3
"""Two WebSocket bugs found by the stress tests, kept as regression tests.

1. wss (intercepted TLS): a server that closed its connection was never
   passed on to the client: reel neither sent close_notify nor closed the
   client's connection, and the flow stayed open until the client gave up.
2. capture=on with the capture buffer full: once one message did not fit,
   the flow was marked as losing records and every later message of the
   connection was silently not recorded. Now each message that does not
   fit is left out and counted (reel flow says how many), and the messages
   after the burst are recorded again.
"""
import os
import struct
import time
import unittest

import test_websocket_stress as t
from proxyenv import Reel, main


class WebSocketRegressions(t.WebSocketStressTest):
    def test_server_vanishes_mid_frame_wss(self):
        self.server_vanishes(True)

    def test_capture_on_overflow_counts_every_lost_message(self):
        r = Reel(self.root, "overflow", "upstream_trusted_ca=" + self.origin.ca,
                 "capture_buffer=16MiB", "capture=on")
        saved, self.reel = self.reel, r
        try:
            path, size, count = b"/overflow", 65536, 16384
            payload = os.urandom(size)  # incompressible: the store falls behind

            def behaviour(s):
                f = t.frame(2, payload, mask=False)
                for _ in range(count):
                    s.sendall(f)
                t.read_frame(s)
                s.sendall(t.frame(8, struct.pack("!H", 1000), mask=False))
            self.server.behaviours[path] = behaviour
            c = self.connect(path)
            buf, left = bytearray(1 << 20), count * (size + 10)
            while left:
                k = c.recv_into(buf, min(len(buf), left))
                self.assertGreater(k, 0)
                left -= k
            c.sendall(t.frame(8, struct.pack("!H", 1000)))
            t.read_frame(c)
            c.close()
            flows = r.wait_flows(1, "~u /overflow$", timeout=30)
            row = flows[0]
            missing = count + 2 - row["messages"]
            print("\n  %d of %d messages in the index" % (row["messages"], count + 2))
            self.assertEqual(row["state"], "complete", row["error"])
            shown = r.cli("flow", "overflow", str(row["id"]), "--headers-only").stdout.decode()
            if missing:
                self.assertIn("! %d message%s not stored at all" %
                              (missing, " was" if missing == 1 else "s were"), shown)
            # the close handshake after the burst is recorded again
            full = r.flow(row["id"])
            self.assertEqual([m["type"] for m in full["messages"][-2:]], ["close", "close"])
        finally:
            self.reel = saved
            self.assertEqual(r.stop(), 0)


# Only the tests above: the stress tests this class inherits its set-up from
# run in test_websocket_stress.py (None is not collected as a test).
for _name in dir(t.WebSocketStressTest):
    if _name.startswith("test_"):
        setattr(WebSocketRegressions, _name, None)


# Only the two regressions here: the stress tests this class inherits its
# set-up from run in test_websocket_stress (they ran twice, a minute of CI).
for _name in [n for n in vars(t.WebSocketStressTest) if n.startswith("test_")]:
    setattr(WebSocketRegressions, _name, None)


if __name__ == "__main__":
    main()
