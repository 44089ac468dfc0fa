#!/usr/bin/python3
"""Read a reel session's spool without reel: an example of docs/format.md.

usage: read_spool.py SESSION_DIR [--flow ID] [--json] [--proto PATH]

Lists the flows of the session (id, state, method, status, URL), or with
--flow ID shows one flow; --flow ID --json prints the same JSON object as
`reel flow SESSION ID --json`, but for what only the index knows (below).

Needs only Debian's python3-protobuf, python3-zstandard and protoc (from
protobuf-compiler): the Record classes are generated from schema/flow.proto
at start-up. It reads the spool only, never session.db, so it also works on
a session whose index is lost. What only the index knows is not shown: a
flow cut off by a crash is "open" here, where reel says state "interrupted"
with error "recording stopped before the flow ended"; marks, tags and
annotations live in session.db only (see them with the sqlite3 shell).
"""
import argparse
import base64
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile

import zstandard
from google.protobuf.message import DecodeError

MAX_RECORD = 524288  # docs/format.md: a longer record length is corruption
DEFAULT_PORT = {"http": 80, "https": 443}
HEAD_KEYS = {"request": ("method", "scheme", "host", "port", "target", "url",
                         "http_version", "headers"),
             "response": ("status", "reason", "http_version", "headers")}


def load_schema(proto):
    """Compiles flow.proto with protoc and imports the generated module."""
    with tempfile.TemporaryDirectory(prefix="reel-proto-") as out:
        subprocess.run(["protoc", "--python_out=" + out, "-I", os.path.dirname(proto),
                        os.path.basename(proto)], check=True)
        sys.path.insert(0, out)
        try:
            return importlib.import_module("flow_pb2")
        finally:
            sys.path.remove(out)


def read_varint(f):
    """protobuf base-128 varint; None at a clean end of the stream."""
    value = shift = 0
    while True:
        b = f.read(1)
        if not b:
            if shift == 0:
                return None
            raise ValueError("stream ends inside a record length")
        value |= (b[0] & 0x7F) << shift
        shift += 7
        if b[0] < 0x80:
            return value
        if shift > 63:
            raise ValueError("record length varint too long")


def records(session_dir, pb):
    """Every Record of every segment, in spool order."""
    spool = os.path.join(session_dir, "spool")
    for name in sorted(n for n in os.listdir(spool) if re.fullmatch(r"\d{8}\.zst", n)):
        with open(os.path.join(spool, name), "rb") as raw:
            # A segment is many zstd frames: keep reading across them.
            z = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            f = io.BufferedReader(z, 1 << 16)
            try:
                while (n := read_varint(f)) is not None:
                    if n > MAX_RECORD:
                        raise ValueError(f"record length {n} is too large")
                    data = f.read(n)
                    if len(data) != n:
                        raise ValueError("the last record is cut short")
                    rec = pb.Record()
                    rec.ParseFromString(data)
                    yield rec
            except (ValueError, DecodeError, zstandard.ZstdError) as e:
                # Most often a frame torn by a crash, or one being written
                # right now; reel's recovery would set it aside.
                print(f"read_spool.py: {name}: {e}; skipping the rest of this segment",
                      file=sys.stderr)


def text(b):
    """Bytes as reel's JSON shows them: a string if UTF-8, else {"b64": ...}."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(b).decode()}


def url(h):
    """scheme://host[:port]target, as the index builds it (docs/format.md)."""
    if not h.host:  # refused before its host was known: the target as sent
        return text(h.target)
    scheme = h.scheme or "http"
    host = b"[" + h.host + b"]" if b":" in h.host else h.host
    port = b"" if h.port in (0, DEFAULT_PORT.get(scheme)) else b":%d" % h.port
    target = b"" if h.target == b"*" else (h.target or b"/")
    return text(scheme.encode() + b"://" + host + port + target)


def headers(hs):
    return [[text(h.name), text(h.value)] for h in hs]


def edits(es):
    """modify_headers' changes (HeaderEdit): value None when removed."""
    return [dict(name=text(e.name), value=None if e.removed else text(e.value), rule=e.rule)
            for e in es]


OPCODES = {0: "tcp", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def flow_json(flow_id, recs, replayed_as=()):
    """The `reel flow --json` object of one flow, from its records in order;
    replayed_as: the ids of the flows of the session that replay it (their
    start records' replay_of names it)."""
    f = dict.fromkeys(("id", "uuid", "kind", "source", "state", "client_addr", "server_addr",
                       "client_conn", "stream_id", "client_tls", "start_us", "end_us", "request_end_us", "response_start_us",
                       "error", "request", "response", "timings", "server_conn", "messages",
                       "replay_of", "interim", "request_trailers", "response_trailers",
                       "request_body_edit", "response_body_edit"))
    f.update(id=flow_id, state="open", replayed_as=sorted(replayed_as),  # "open": no end yet
             # trailers that did not reach the other side (Trailers.not_passed_on)
             request_trailers_not_passed_on=False, response_trailers_not_passed_on=False)
    body = {"request": bytearray(), "response": bytearray()}
    decoded = {"request": False, "response": False}
    sizes, truncated, dropped, excess = None, (False, False), (0, 0), 0
    msg_data = []  # the data of each message, joined from its continuation records

    def client_tls(t):
        return {"sni": t.sni or None, "alpn": t.alpn or None, "tls_version": t.tls_version or None,
                "cipher": t.cipher or None, "resumed": t.resumed}

    def end_facts(e):
        """What an end or error record says besides sizes."""
        nonlocal dropped, excess
        excess = e.response_excess  # bytes past the response's end, not passed on
        if f["client_tls"] is None and e.HasField("client_tls"):
            # a TLS tunnel whose client's handshake came after its start
            f["client_tls"] = client_tls(e.client_tls)
        f.update(request_end_us=e.request_end_us or None,
                 response_start_us=e.response_start_us or None)
        if e.server_addr:  # known once the origin was reached
            f["server_addr"] = e.server_addr
        dropped = (e.request_body_dropped, e.response_body_dropped)
        if e.HasField("timings"):
            t = e.timings
            f["timings"] = {k: getattr(t, k) for k in (
                "blocked_us", "dns_us", "connect_us", "send_us", "wait_us",
                "receive_us", "ssl_us")}

    for r in recs:
        ev = r.WhichOneof("event")
        if ev == "start":
            s = r.start
            f.update(uuid=s.uuid, kind="tunnel" if s.kind == 1 else "http",  # 1: TUNNEL
                     source=s.source or None, client_addr=s.client_addr or None,
                     server_addr=s.server_addr or None, start_us=r.time_us,
                     client_conn=s.client_conn or None, stream_id=s.stream_id or None)  # 0: none
            if s.HasField("client_tls"):  # inside intercepted TLS: the client's with reel
                f["client_tls"] = client_tls(s.client_tls)
            if s.HasField("replay_of") and s.replay_of.flow_id:  # made by `reel replay`
                f["replay_of"] = s.replay_of.flow_id
                if s.replay_of.session:
                    f["replay_session"] = s.replay_of.session
        elif ev == "request_head":
            h = r.request_head
            f["request"] = dict(method=text(h.method), scheme=h.scheme or None,
                                host=text(h.host), port=h.port, target=text(h.target),
                                url=url(h), http_version=h.http_version or None,
                                headers=headers(h.headers), absolute_form=h.absolute_form,
                                reverse=h.reverse, mapped_to=h.mapped_to or None,
                                original_dst=h.original_dst or None, modified=edits(h.modified))
            decoded["request"] = h.body_decoded
        elif ev == "response_head":
            h = r.response_head
            f["response"] = dict(status=h.status, reason=text(h.reason),
                                 http_version=h.http_version or None,
                                 headers=headers(h.headers), generated=h.generated,
                                 local_file=h.local_file or None,
                                 blocked_by=h.blocked_by or None, modified=edits(h.modified))
            decoded["response"] = h.body_decoded
            # a switch to WebSocket makes it one, as the index says it: a
            # 101 to websocket, or a 2xx to an HTTP/2 extended CONNECT whose
            # :protocol is websocket (RFC 8441)
            rq = f.get("request") or {}
            h2ws = rq.get("method") == "CONNECT" and any(
                isinstance(n, str) and isinstance(v, str) and n.lower() == ":protocol"
                and v.lower() == "websocket"
                for n, v in rq.get("headers") or [])
            if f["kind"] == "http" and (
                    (h.status == 101 and any(
                        x.name.lower() == b"upgrade" and b"websocket" in x.value.lower()
                        for x in h.headers)) or (h2ws and 200 <= h.status < 300)):
                f["kind"] = "websocket"
        elif ev == "interim":  # a 1xx answer before the final one
            h = r.interim
            if f["interim"] is None:
                f["interim"] = []
            f["interim"].append(dict(time_us=r.time_us, status=h.status, reason=text(h.reason),
                                     http_version=h.http_version or None,
                                     headers=headers(h.headers)))
        elif ev == "trailers":
            t = r.trailers
            side = "response" if t.response else "request"
            f[side + "_trailers"] = headers(t.headers)
            f[side + "_trailers_not_passed_on"] = t.not_passed_on
        elif ev == "body_edit":  # what modify_body rules did to the request or response body
            b = r.body_edit
            side = "response" if b.response else "request"
            f[side + "_body_edit"] = dict(rules=list(b.rules), replacements=b.replacements,
                                          sent_size=b.sent_size, decoded=b.decoded,
                                          not_applied=b.not_applied or None)
            if not b.response:  # reel sent the client's 100 (Continue) itself
                f[side + "_body_edit"]["answered_continue"] = b.answered_continue
            # the body as the other side got it: none when the rules were not
            # applied, nor in spools written before reel kept it
            kept = not b.not_applied and (len(b.sent_body) or b.sent_size == 0)
            f[side + "_body_edit"]["sent_body_b64"] = (
                base64.b64encode(b.sent_body).decode() if kept else None)
            f[side + "_body_edit"]["sent_body_truncated"] = b.sent_body_truncated
        elif ev == "server_conn":  # the upstream connection (the last one counts)
            c = r.server_conn
            f["server_conn"] = dict(conn_id=c.conn_id, address=c.address, sni=c.sni or None,
                                    alpn=c.alpn or None, tls_version=c.tls_version or None,
                                    cipher=c.cipher or None, reused=c.reused, retried=c.retried,
                                    unverified=c.unverified, verify_error=c.verify_error or None,
                                    peer_cert=c.peer_cert or None,
                                    # the upstream proxy ("host:port", or its
                                    # socks5:// URL), and whether the request
                                    # went to it in absolute form
                                    via=c.via or None, via_forward=c.via_forward,
                                    # the origin asked for a client certificate,
                                    # and the one reel presented
                                    client_cert_asked=c.client_cert_asked,
                                    client_cert=c.client_cert or None,
                                    # its TLS resumed a session from an
                                    # earlier connection
                                    resumed=c.resumed,
                                    # the dns_overrides entry its address
                                    # came from
                                    dns_override=c.dns_override or None)
            # its set-up: opened_us 0 is "not known", and the three spans then too
            known = c.opened_us != 0
            f["server_conn"].update(opened_us=c.opened_us if known else None,
                                    dns_us=c.dns_us if known else -1,
                                    connect_us=c.connect_us if known else -1,
                                    ssl_us=c.ssl_us if known else -1)
        elif ev == "message":  # WebSocket or TCP message
            m = r.message
            if m.continued:
                msg_data[-1] += m.data
                continue
            if f["messages"] is None:
                f["messages"] = []
            msg = dict(time_us=r.time_us, from_client=m.from_client, opcode=m.opcode,
                       type=OPCODES.get(m.opcode, "opcode?"), length=m.length,
                       truncated=m.truncated, compressed=m.compressed)
            if m.opcode == 8:
                msg["close_code"] = m.close_code
            f["messages"].append(msg)
            if m.opcode != 0 and f["kind"] == "http":  # a WebSocket message
                f["kind"] = "websocket"
            msg_data.append(bytearray(m.data))
        elif ev in ("request_body", "response_body"):
            d = ev.split("_")[0]
            if f[d] is None:  # body without a head (tunnels): head fields null
                f[d] = dict.fromkeys(HEAD_KEYS[d])
            body[d] += getattr(r, ev).data
        elif ev == "end":
            e = r.end
            f.update(state="complete", end_us=r.time_us)
            sizes = (e.request_body_size, e.response_body_size)
            truncated = (e.request_truncated, e.response_truncated)
            end_facts(e)
        elif ev == "error":
            e = r.error
            # interrupted: written by recovery or repair for a flow whose
            # run ended (its process died) before the flow did
            f.update(state="interrupted" if e.interrupted else "error", end_us=r.time_us,
                     error=e.message)
            sizes = (e.request_body_size, e.response_body_size)
            end_facts(e)
    for i, d in enumerate(("request", "response")):
        if f[d] is not None:
            # a body stored decoded (a HAR import) may be longer than it
            # was on the wire, still encoded: the end record's size stands
            size = max(sizes[i] if sizes else 0, len(body[d]))
            if sizes and decoded[d]:
                size = sizes[i]
            f[d] = dict(f[d], body_b64=base64.b64encode(bytes(body[d])).decode(),
                        body_size=size,
                        body_truncated=truncated[i], body_decoded=decoded[d],
                        body_dropped=dropped[i])
    if f["response"] is not None:
        f["response"]["body_excess"] = excess
    for msg, data in zip(f["messages"] or [], msg_data):
        msg["data_b64"] = base64.b64encode(bytes(data)).decode()
    return f


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Read a reel session's spool.")
    ap.add_argument("session_dir")
    ap.add_argument("--flow", type=int, metavar="ID", help="show this flow")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--proto", default=os.path.join(here, "..", "..", "schema", "flow.proto"))
    args = ap.parse_args()
    pb = load_schema(os.path.abspath(args.proto))
    if args.flow is not None:
        recs, replays = [], []
        for r in records(args.session_dir, pb):
            if r.flow_id == args.flow:
                recs.append(r)
            elif (r.WhichOneof("event") == "start" and r.start.HasField("replay_of")
                  and r.start.replay_of.flow_id == args.flow and not r.start.replay_of.session):
                replays.append(r.flow_id)
        if not recs:
            sys.exit(f"read_spool.py: no flow {args.flow}")
        f = flow_json(args.flow, recs, replays)
        if args.json:
            print(json.dumps(f, indent=2))
            return
        for k in ("id", "state", "uuid", "source", "start_us", "end_us", "error"):
            print(f"{k}: {f[k]}")
        for d in ("request", "response"):
            if f[d]:
                line = ("method", "url") if d == "request" else ("status", "reason")
                print(f"\n{d}:", *(f[d][k] for k in line))
                for name, value in f[d]["headers"] or []:
                    print(f"  {name}: {value}")
                print(f"  ({f[d]['body_size']} body bytes)")
        return
    flows = {}  # id -> [state, method, status, url]; no bodies kept
    for r in records(args.session_dir, pb):
        row = flows.setdefault(r.flow_id, ["open", None, None, None])
        ev = r.WhichOneof("event")
        if ev == "request_head":
            row[1], row[3] = text(r.request_head.method), url(r.request_head)
        elif ev == "response_head":
            row[2] = r.response_head.status
        elif ev in ("end", "error"):
            row[0] = "complete" if ev == "end" else "error"
    if args.json:
        print(json.dumps([dict(id=i, state=s, method=m, status=st, url=u)
                          for i, (s, m, st, u) in sorted(flows.items())], indent=2))
    else:
        for i, (s, m, st, u) in sorted(flows.items()):
            print(f"{i:6}  {s:9} {m or '-':7} {st if st is not None else '-':>3}  {u or ''}")


if __name__ == "__main__":
    main()
