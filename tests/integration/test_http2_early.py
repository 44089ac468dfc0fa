#!/usr/bin/python3
"""An origin that answers before the request body is whole (an early 413,
a 200 to an upload it does not need), to an HTTP/2 client (python3-h2,
prior-knowledge h2c to `reel record`) still sending that body.

RFC 9113 8.1: a server may send a complete response before the request is
complete, then RST_STREAM NO_ERROR to tell the client to stop sending.
reel's HTTP/2 front does so once the response's END_STREAM has gone out,
drops the DATA that still comes, and ends the flow complete with its
request body unfinished (request_end_us null), as for an HTTP/1.1 client
(test_truth.py's early answers). It used to wait for the rest of the body,
which a client waiting for window (or for the answer) never sends: the
stream, its lane and the flow stayed open.

The origins: an HTTP/1.1 one that answers 413 and closes, one that answers
200 and reads on (nginx's way with a body it discards), and an h2c one
(h2c_upstreams) that answers 413 and resets the stream with NO_ERROR,
which an HTTP/1.1 client sees as the origin's close after its answer."""
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxyenv import TMPBASE, Reel, main  # noqa: E402
from test_http2 import H2C  # noqa: E402

ANNOUNCED = 3000000  # the request's content-length
SENT = 60000  # what the client sends of it (within the initial window)
CUT_SENT = 200000  # what the origin sends of a body it then cuts


class EarlyH1Origin:
    """HTTP/1.1 on 127.0.0.1: reads a request head and `need` bytes of its
    body and answers, then closes ("close") or reads on until the client
    ends ("read")."""

    def __init__(self, answer, end, need=0):
        self.answer, self.end, self.need = answer, end, need
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(30)
        try:
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < self.need:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            c.sendall(self.answer)
            if self.end == "fin":
                # a body read until the close, whole: FIN, then the
                # upload is read on for a while (a lingering close)
                c.shutdown(socket.SHUT_WR)
                c.settimeout(1)
                try:
                    while c.recv(65536):
                        pass
                except OSError:
                    pass
            elif self.end == "reset":
                # ... cut short: the connection reset, no FIN
                time.sleep(0.2)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.end == "flood":
                # a body read until the close, more of it than the client
                # takes, cut short by a reset after 0.5 s
                c.settimeout(0.05)
                body, k, t0 = b"x" * 2000000, 0, time.time()
                while k < len(body) and time.time() - t0 < 0.5:
                    try:
                        k += c.send(body[k:k + 65536])
                    except socket.timeout:
                        pass
                time.sleep(0.2)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.end == "close":
                time.sleep(0.05)
                c.shutdown(socket.SHUT_RDWR)
            else:
                while c.recv(65536):
                    pass
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.srv.close()


class EarlyH2cOrigin:
    """Prior-knowledge h2c on 127.0.0.1 (python3-h2): answers each request
    413 as soon as its HEADERS came, then RST_STREAM NO_ERROR (RFC 9113
    8.1), and reads on; counts the DATA bytes that came after its reset."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.after_reset = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, s):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        done = set()
        s.settimeout(30)
        try:
            s.sendall(conn.data_to_send())
            while True:
                data = s.recv(65536)
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        conn.send_headers(ev.stream_id, [(":status", "413"),
                                                         ("content-length", "4")])
                        conn.send_data(ev.stream_id, b"big\n", end_stream=True)
                        conn.reset_stream(ev.stream_id, 0)  # NO_ERROR
                        done.add(ev.stream_id)
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.flow_controlled_length:
                            conn.acknowledge_received_data(ev.flow_controlled_length,
                                                           ev.stream_id)
                        if ev.stream_id in done:
                            self.after_reset += len(ev.data)
                out = conn.data_to_send()
                if out:
                    s.sendall(out)
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.srv.close()


class EarlyAnswerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(dir=TMPBASE)
        cls.o413 = EarlyH1Origin(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n"
                                 b"Connection: close\r\n\r\nbig\n", "close")
        cls.o200 = EarlyH1Origin(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", "read")
        cls.whole = EarlyH1Origin(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", "read", 10)
        untilclose = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789"
        cls.ofin = EarlyH1Origin(untilclose, "fin")
        cls.orst = EarlyH1Origin(untilclose, "reset")
        cls.oflood = EarlyH1Origin(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "flood")
        # a body short of its Content-Length, then the origin's FIN
        cls.oshort = EarlyH1Origin(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" +
                                   b"s" * CUT_SENT, "close")
        # a body read until the close, cut by a reset
        cls.ostuck = EarlyH1Origin(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" +
                                   b"z" * CUT_SENT, "reset")
        cls.h2c = EarlyH2cOrigin()
        cls.reel = Reel(cls.root, "h2early", "h2c_upstreams=localhost:%d" % cls.h2c.port)

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        for o in (cls.o413, cls.o200, cls.whole, cls.ofin, cls.orst, cls.oflood, cls.oshort,
                  cls.ostuck, cls.h2c):
            o.stop()
        if code != 0:
            print(cls.reel.log())
        shutil.rmtree(cls.root, ignore_errors=True)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def early_post(self, c, authority, path):
        """A POST announcing ANNOUNCED bytes of which the client sends
        SENT, then waits: the stream as it ended, and how long it took."""
        sid = c.request("POST", authority, path, end=False,
                        extra=[("content-length", str(ANNOUNCED))])
        t0 = time.time()
        c.conn.send_data(sid, b"a" * 16000)
        c.conn.send_data(sid, b"a" * 16000)
        c.conn.send_data(sid, b"a" * 16000)
        c.conn.send_data(sid, b"a" * (SENT - 48000))
        c.flush()
        st = c.streams[sid]
        c.wait(lambda: st["reset"] is not None, timeout=6)
        return sid, st, time.time() - t0

    def the_flow(self, path):
        fs = self.reel.wait_flows(1, "~u %s$" % path, timeout=5)
        self.assertEqual(len(fs), 1, fs)
        return fs[0], self.reel.flow(fs[0]["id"])

    def check_h2_client(self, authority, path, status, data):
        c = H2C(self.reel.port)
        try:
            sid, st, took = self.early_post(c, authority, path)
            self.assertEqual(dict(st["headers"])[b":status"], status, st)
            self.assertEqual(st["data"], data)
            self.assertTrue(st["ended"], st)  # END_STREAM first, then the reset
            self.assertEqual(st["reset"], 0, st)  # NO_ERROR
            self.assertLess(took, 3, path)
            # the connection goes on: the next stream is served as well
            sid2, st2, _ = self.early_post(c, authority, path + "-2")
            self.assertEqual(st2["data"], data)
            self.assertEqual(st2["reset"], 0, st2)
        finally:
            c.close()
        for p in (path, path + "-2"):
            row, f = self.the_flow(p)
            self.assertEqual((row["state"], row["status"]), ("complete", int(status)), row)
            self.assertLessEqual(row["request_body_size"], SENT, row)
            self.assertIsNone(f["error"], f)
            self.assertIsNone(f["request_end_us"], f)  # the upload never ended
            self.assertLessEqual(f["request"]["body_size"], SENT, f["request"])
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
            # receive ends with the origin's last byte, not with the client
            self.assertLess(f["timings"]["receive_us"], 1000000, f["timings"])

    def test_h1_origin_answers_413_and_closes(self):
        self.check_h2_client("127.0.0.1:%d" % self.o413.port, "/e413", b"413", b"big\n")

    def test_h1_origin_answers_200_and_reads_on(self):
        self.check_h2_client("127.0.0.1:%d" % self.o200.port, "/e200", b"200", b"ok\n")

    def test_h1_origin_answers_until_its_close(self):
        # a body read until the close (no length, no chunks) ends at the
        # origin's FIN: whole, so END_STREAM then RST_STREAM NO_ERROR.
        # The lane's parser used to end it only at the lane's close, which
        # waited for the rest of the upload: the client saw neither, and
        # the flow ended as the client's error when it gave up.
        self.check_h2_client("127.0.0.1:%d" % self.ofin.port, "/efin", b"200", b"0123456789")

    def test_h1_origin_cuts_a_body_until_its_close(self):
        # the same body ended by a reset, no FIN: cut short, not whole;
        # the stream is reset with an error and so is the flow
        c = H2C(self.reel.port)
        try:
            sid, st, took = self.early_post(c, "127.0.0.1:%d" % self.orst.port, "/ecut")
        finally:
            c.close()
        self.assertEqual(st["data"], b"0123456789")
        self.assertFalse(st["ended"], st)
        self.assertNotIn(st["reset"], (None, 0), st)
        self.assertLess(took, 3)
        row, f = self.the_flow("/ecut")
        self.assertEqual(row["state"], "error", row)
        self.assertIn("cut short", f["error"])

    def test_cut_body_reaches_a_slow_reader_before_the_reset(self):
        # a slow reader's stream of a body read until the close, which the
        # origin cuts: reel sends the stream what it still held for it, a
        # megabyte, then resets it (INTERNAL_ERROR), as it delivers an
        # HTTP/1.1 client's before resetting its connection. The reset
        # used to go at once, dropping those bytes (the flow said how many)
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", "127.0.0.1:%d" % self.oflood.port, "/eflood")
            st = c.streams[sid]
            time.sleep(1.5)  # reading nothing: the window holds the rest
            c.wait(lambda: st["reset"] is not None, timeout=6)
        finally:
            c.close()
        self.assertEqual(st["reset"], 2, st)  # INTERNAL_ERROR
        self.assertFalse(st["ended"], st)
        row, f = self.the_flow("/eflood")
        self.assertEqual(row["state"], "error", row)
        m = re.search(r"\(the (\d+) bytes of the response still queued in reel for the HTTP/2 "
                      r"stream were then sent to the client before reel reset the stream\)$",
                      f["error"])
        self.assertIsNotNone(m, f["error"])
        self.assertTrue(f["error"].startswith("response cut short: "), f["error"])
        self.assertGreater(int(m.group(1)), 65536)
        # every byte reel read of the body, then the reset
        self.assertEqual(len(st["data"]), row["response_body_size"], (f["error"], row))

    def test_body_short_of_its_length_reaches_a_slow_reader_before_the_reset(self):
        # the origin closes short of its Content-Length while the client
        # (its window full) has not taken the body: every byte the origin
        # sent reaches the client, then RST_STREAM INTERNAL_ERROR
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", "127.0.0.1:%d" % self.oshort.port, "/eshort")
            st = c.streams[sid]
            time.sleep(0.6)  # reading nothing meanwhile: the cut comes
            c.wait(lambda: st["reset"] is not None, timeout=6)
        finally:
            c.close()
        self.assertEqual((st["reset"], st["ended"]), (2, False), st)
        self.assertEqual(st["data"], b"s" * CUT_SENT)
        row, f = self.the_flow("/eshort")
        self.assertEqual((row["state"], row["response_body_size"]), ("error", CUT_SENT), row)
        m = re.search(r"\(the (\d+) bytes of the response still queued in reel for the HTTP/2 "
                      r"stream were then sent to the client before reel reset the stream\)$",
                      f["error"])
        self.assertIsNotNone(m, f["error"])
        # at most the stream's first window (65535) went before the cut
        self.assertGreaterEqual(int(m.group(1)), CUT_SENT - 65535, f["error"])

    def test_cut_body_a_client_never_takes_is_reset_in_the_end(self):
        # the client's window stays shut: reel waits for it as for an
        # HTTP/1.1 client, 10 s or idle_timeout (2 s here), then resets
        # the stream, and the flow says how many bytes it never got
        self.reel.set_config("set", "idle_timeout", "2")
        c = H2C(self.reel.port)
        try:
            c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            c.flush()
            t0 = time.time()
            sid = c.request("GET", "127.0.0.1:%d" % self.ostuck.port, "/estuck")
            st = c.streams[sid]
            time.sleep(1)
            # the flow's end waits with the stream (the cut came at 0.2 s)
            during = self.reel.flows("~u /estuck$")
            c.wait(lambda: st["reset"] is not None, timeout=6)
            took = time.time() - t0
        finally:
            c.close()
            self.reel.set_config("unset", "idle_timeout")
        self.assertEqual((st["reset"], st["data"]), (2, b""), st)
        self.assertGreater(took, 1.8)  # the origin's reset came after 0.2 s
        self.assertLess(took, 4)
        row, f = self.the_flow("/estuck")
        self.assertEqual((row["state"], row["response_body_size"]), ("error", CUT_SENT), row)
        self.assertRegex(f["error"], r"^response cut short: .+ \(%d of the %d bytes of the "
                         r"response queued in reel for the HTTP/2 stream were still not sent "
                         r"after waiting for the client to take them, when reel reset the "
                         r"stream\)$" % (CUT_SENT, CUT_SENT))
        self.assertEqual([x["state"] for x in during], ["open"], during)

    def test_cut_body_the_client_resets_while_reel_holds_it(self):
        # the client resets the stream while reel waits to send it the cut
        # body: the flow says both, and how many bytes it never got
        c = H2C(self.reel.port)
        try:
            c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            c.flush()
            sid = c.request("GET", "127.0.0.1:%d" % self.ostuck.port, "/egone")
            time.sleep(0.6)  # the cut came at 0.2 s
            c.conn.reset_stream(sid, 8)  # CANCEL
            c.flush()
            row, f = self.the_flow("/egone")
        finally:
            c.close()
        self.assertEqual((row["state"], row["response_body_size"]), ("error", CUT_SENT), row)
        self.assertRegex(f["error"], r"^response cut short: .+; then the client reset the "
                         r"HTTP/2 stream \(error code 0x8 CANCEL\) before it received the whole "
                         r"response \(%d bytes of the response were still queued in reel for the "
                         r"HTTP/2 stream, not sent\)$" % CUT_SENT)

    def test_shutdown_while_reel_holds_a_response(self):
        # reel stops while it holds what a client with a shut window has
        # not taken: the flows say so once ("proxy shut down before the
        # flow ended before the client received..." said "before" twice)
        reel = Reel(self.root, "h2stop")
        c = H2C(reel.port)
        try:
            c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            c.flush()
            c.request("GET", "127.0.0.1:%d" % self.o200.port, "/swhole")
            c.request("GET", "127.0.0.1:%d" % self.ostuck.port, "/scut")
            time.sleep(0.6)  # the answer came, and the cut at 0.2 s
        finally:
            self.assertEqual(reel.stop(), 0, reel.log())
            c.close()
        f = {x["url"].rsplit("/", 1)[1]: x for x in reel.flows()}
        self.assertEqual(f["swhole"]["error"], "proxy shut down before the client received the "
                         "whole response: the last 3 bytes of the body were not sent")
        self.assertRegex(f["scut"]["error"], r"^response cut short: .+; then proxy shut down "
                         r"before the client received the whole response \(%d bytes of the "
                         r"response were still queued in reel for the HTTP/2 stream, not sent\)$"
                         % CUT_SENT)

    def test_h2_origin_answers_and_resets_no_error(self):
        self.check_h2_client("localhost:%d" % self.h2c.port, "/eh2", b"413", b"big\n")
        f = self.the_flow("/eh2")[1]
        self.assertEqual(f["response"]["http_version"], "HTTP/2.0")

    def test_end_stream_after_a_whole_body_is_no_early_answer(self):
        # the client sends its whole body (content-length 10) and its
        # END_STREAM only in an empty DATA frame after the answer: the
        # request was whole, the stream is not reset and the flow says
        # when the request ended
        c = H2C(self.reel.port)
        try:
            sid = c.request("POST", "127.0.0.1:%d" % self.whole.port, "/whole", end=False,
                            extra=[("content-length", "10")])
            c.conn.send_data(sid, b"0123456789")
            c.flush()
            st = c.streams[sid]
            c.wait(lambda: st["ended"] or st["reset"] is not None, timeout=6)
            time.sleep(0.2)  # (a reset after the END_STREAM would come now)
            c.conn.end_stream(sid)
            c.flush()
            sid2 = c.request("GET", "127.0.0.1:%d" % self.o200.port, "/whole-2")
            c.wait(lambda: c.done(sid2), timeout=6)
            # (ended while the connection is open: its close would end it)
            row, f = self.the_flow("/whole")
        finally:
            c.close()
        self.assertEqual(st["data"], b"ok\n")
        self.assertIsNone(st["reset"], st)
        self.assertEqual((row["state"], row["status"]), ("complete", 200), row)
        self.assertEqual(f["request"]["body_size"], 10)
        self.assertIsNotNone(f["request_end_us"], f)

    def test_h2_origin_reset_ends_an_http1_clients_exchange(self):
        # an HTTP/1.1 client through the same h2c origin: the origin's
        # reset after its answer is, to the exchange, an HTTP/1.1
        # origin's close after an early answer (it used to wait for the
        # whole body, which nobody read any more)
        s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        t0 = time.time()
        s.sendall(b"POST http://localhost:%d/eh1 HTTP/1.1\r\nHost: localhost:%d\r\n"
                  b"Content-Length: %d\r\n\r\n" % (self.h2c.port, self.h2c.port, ANNOUNCED) +
                  b"a" * 100000)
        out = b""
        s.settimeout(6)
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except (socket.timeout, ConnectionResetError):
            pass
        took = time.time() - t0
        s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out)
        self.assertTrue(out.endswith(b"\r\n\r\nbig\n"), out)
        self.assertLess(took, 3)
        row, f = self.the_flow("/eh1")
        self.assertEqual((row["state"], row["status"]), ("complete", 413), row)
        self.assertIsNone(f["request_end_us"], f)
        self.assertLessEqual(f["request"]["body_size"], 100000, f["request"])


if __name__ == "__main__":
    main()
