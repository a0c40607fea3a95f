#!/usr/bin/env python3
"""Holds etcd-lock wire logs (--wire-log, JSON lines) against a packet capture of the same
traffic, decoded by tshark alone (HTTP/2 + gRPC + protobuf dissectors reading our proto/ files).

    compare.py decode  --pcap F --port P --proto DIR --out decoded.json
    compare.py compare --decoded decoded.json --log A.jsonl [--log B.jsonl ...]
    compare.py check   --pcap F --port P --proto DIR --log A.jsonl [...]   (both steps)

`decode` turns the capture into gRPC calls: per TCP connection, per HTTP/2 stream, the method
(the `:path` of the stream's request headers, HPACK decoded by tshark), the request metadata,
each gRPC message in each direction in order (payload length without the 5-byte prefix, and its
fields rendered with the wire log's JSON rules), the trailers' grpc-status and any RST_STREAM.
Nothing of etcd-lock's code is used: the only inputs are the capture, tshark and the .proto files.

`compare` requires every log line to be in the capture and every gRPC exchange of the capture
to be in a log: the same calls (method, request, response, sizes, status, metadata per attempt),
the same stream messages (per stream, per direction, in order, with the same fields and byte
counts) and the same stream ends. Each TCP connection is attributed to the log (process) whose
lines it matches. Exit status 0 when everything matches, 1 with a list of differences, 2 when
the capture itself cannot be decoded.
"""

import argparse
import base64
import calendar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ET

MAX_SAFE = 2**53 - 1

# grpc-status numbers -> the code names the wire log uses (tonic's `Code` names).
GRPC_CODES = [
    "Ok", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
]

# Request headers whose value the log reports under "metadata" (they change behaviour).
METADATA_KEYS = ("grpc-timeout", "token", "hasleader")

# What the log shows instead of secret messages (Auth/Authenticate).
REDACTED = "<redacted>"

# HTTP/2 RST_STREAM error code CANCEL.
H2_CANCEL = 8


class DecodeError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# .proto files: only which fields are `repeated` (tshark's tree does not say)


def repeated_fields(proto_dir):
    """{(message full name, field name)} for every repeated field in the .proto files."""
    out = set()
    for root, _, files in os.walk(proto_dir):
        for name in files:
            if name.endswith(".proto"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    scan_proto(f.read(), out)
    return out


def scan_proto(text, out):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    tokens = re.findall(r'"[^"]*"|[A-Za-z_][\w.]*|\d+|[{}=;<>,\[\]()]', text)
    package = ""
    scopes = []  # ("message"|"other", name)
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "package" and not scopes:
            package = tokens[i + 1]
            i += 2
            continue
        if t in ("message", "enum", "service", "oneof", "extend") and i + 2 < len(tokens) \
                and tokens[i + 2] == "{":
            scopes.append((t, tokens[i + 1]))
            i += 3
            continue
        if t == "{":
            scopes.append(("other", ""))
        elif t == "}":
            if scopes:
                scopes.pop()
        elif t == "repeated" and scopes:
            # repeated TYPE NAME = N
            msgs = [n for (k, n) in scopes if k == "message"]
            if msgs and i + 2 < len(tokens):
                full = ".".join(([package] if package else []) + msgs)
                out.add((full, tokens[i + 2]))
        i += 1


# ---------------------------------------------------------------------------------------------
# tshark PDML -> gRPC exchanges


def run_tshark(pcap, port, proto_dir):
    cmd = [
        "tshark", "-r", pcap, "-n",
        "-d", f"tcp.port=={port},http2",
        "-o", f'uat:protobuf_search_paths:"{os.path.abspath(proto_dir)}","TRUE"',
        "-o", "protobuf.pbf_as_hf:TRUE",
        "-o", "tcp.desegment_tcp_streams:TRUE",
        "-Y", f"tcp.port=={port}",
        "-T", "pdml",
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise DecodeError(f"tshark failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def child(elem, name):
    for c in elem:
        if c.get("name") == name:
            return c
    return None


def show(elem, name, default=None):
    c = child(elem, name)
    return default if c is None else c.get("show")


def raw_bytes(elem):
    """The bytes of a PDML field from its hex `value` attribute (absent for empty values)."""
    if elem is None:
        return b""
    return bytes.fromhex(elem.get("value") or "")


def render_bytes(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode("ascii")}


def int64_json(v):
    return v if -MAX_SAFE <= v <= MAX_SAFE else str(v)


def read_varint(b, pos=0):
    shift = value = 0
    while True:
        if pos >= len(b):
            raise ValueError("truncated varint")
        byte = b[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


INT64_TYPES = {3, 4, 6, 16, 18}
INT32_TYPES = {5, 7, 13, 15, 17}
TYPE_SUFFIX = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
    8: "bool", 13: "uint32", 14: "int32", 15: "sfixed32", 16: "sfixed64", 17: "sint32",
    18: "sint64",
}


def scalar_values(field_elem, ftype):
    """The decoded scalar value(s) of one field occurrence (several when packed)."""
    suffix = TYPE_SUFFIX.get(ftype)
    if suffix is None:
        return []
    # Unpacked: under protobuf.field.value; packed: under protobuf.field.value.repeated.
    typed = []
    for holder in ("protobuf.field.value", "protobuf.field.value.repeated"):
        value = child(field_elem, holder)
        if value is not None:
            typed += [c for c in value if c.get("name") == f"protobuf.field.value.{suffix}"]
    out = []
    for t in typed:
        s = t.get("show")
        if ftype in INT64_TYPES:
            out.append(int64_json(int(s)))
        elif ftype in INT32_TYPES:
            out.append(int(s))
        elif ftype == 8:
            out.append(s in ("1", "True", "true"))
        elif ftype == 14:
            m = re.search(r"\(([A-Za-z_][A-Za-z0-9_]*)\)\s*$", t.get("showname") or "")
            out.append(m.group(1) if m else int(s))
        elif ftype in (1, 2):
            f = float(s)
            out.append("NaN" if f != f else ("Infinity" if f == float("inf") else
                                            ("-Infinity" if f == float("-inf") else f)))
    return out


def unknown_value(wiretype, raw):
    if wiretype == 0:
        return int64_json(read_varint(raw)[0])
    if wiretype == 2:
        return render_bytes(raw)
    if wiretype in (1, 5):
        return int.from_bytes(raw, "little")
    return {"base64": base64.b64encode(raw).decode("ascii")}


def render_message(container, repeated):
    """Our JSON rendering of the protobuf fields directly inside a PDML container element."""
    msg_name = show(container, "protobuf.message.name", "")
    kids = list(container)
    fields = {}  # json key -> list of values in wire order
    for idx, f in enumerate(kids):
        if f.get("name") != "" or not (f.get("show") or "").startswith("Field("):
            continue
        number = int(show(f, "protobuf.field.number"))
        name = show(f, "protobuf.field.name")
        ftype = int(show(f, "protobuf.field.type", "0") or 0)
        wiretype = int(show(f, "protobuf.field.wiretype", "0"))
        raw = raw_bytes(child(f, "protobuf.field.value"))
        if not name:
            fields.setdefault(f"#{number}", []).append(unknown_value(wiretype, raw))
            continue
        if ftype == 11:
            nested = next((c for c in f if (c.get("name") or "").startswith("pbf.")), None)
            if nested is None and idx + 1 < len(kids) and \
                    (kids[idx + 1].get("name") or "").startswith("pbf."):
                nested = kids[idx + 1]
            if nested is None:
                if raw:
                    raise DecodeError(f"{msg_name}.{name}: tshark gave no nested message")
                values = [{}]
            else:
                values = [render_message(nested, repeated)]
        elif ftype in (9, 12):
            values = [render_bytes(raw)]
        else:
            values = scalar_values(f, ftype)
            if not values:
                raise DecodeError(f"{msg_name}.{name}: no decoded value for type {ftype}")
        fields.setdefault(name, []).extend(values)
    out = {}
    for key, values in fields.items():
        if key.startswith("#"):
            out[key] = values[0] if len(values) == 1 else values
        elif (msg_name, key) in repeated:
            out[key] = values
        else:
            out[key] = values[-1]  # a singular field seen twice: the last one wins
    return out


def decode(pcap, port, proto_dir):
    """The capture as {"connections": [{"conn", "client_port", "streams": [...]}]}."""
    repeated = repeated_fields(proto_dir)
    pdml = run_tshark(pcap, port, proto_dir)
    conns = {}

    def conn_of(tcp_stream, client_port):
        return conns.setdefault(tcp_stream, {
            "conn": tcp_stream, "client_port": client_port, "streams": {}, "data": {},
            "frames": 0, "goaway": [], "closed": {},
        })

    def stream_of(conn, sid, t):
        return conn["streams"].setdefault(sid, {
            "h2_stream": sid, "first_ts": t, "method": None, "authority": None, "metadata": {},
            "client": [], "server": [], "trailers": None, "rst": None,
            "client_end": False, "server_end": False,
        })

    root = ET.fromstring(pdml)
    for packet in root.iter("packet"):
        protos = list(packet)
        geninfo = next((p for p in protos if p.get("name") == "frame"), None)
        tcp = next((p for p in protos if p.get("name") == "tcp"), None)
        if geninfo is None or tcp is None:
            continue
        t = float(show(geninfo, "frame.time_epoch"))
        src, dst = int(show(tcp, "tcp.srcport")), int(show(tcp, "tcp.dstport"))
        from_server = src == port
        conn = conn_of(int(show(tcp, "tcp.stream")), dst if from_server else src)
        side = "server" if from_server else "client"
        tcp_flags = int(show(tcp, "tcp.flags", "0x0"), 16)
        if tcp_flags & 0x5:  # FIN or RST: this side closed the connection
            conn["closed"].setdefault(side, t)
        current = None
        for p in protos:
            pname = p.get("name")
            if pname == "http2":
                for fr in p:
                    if fr.get("name") != "http2.stream":
                        continue
                    ftype = int(show(fr, "http2.type", "-1"))
                    sid = int(show(fr, "http2.streamid", "0"))
                    conn["frames"] += 1
                    if ftype == 7:  # GOAWAY
                        conn["goaway"].append({"from": side, "ts": t})
                    if sid == 0:
                        continue
                    st = stream_of(conn, sid, t)
                    current = st
                    flags = int(show(fr, "http2.flags", "0x0"), 16)
                    end_stream = bool(flags & 0x1)
                    if ftype == 0:  # DATA
                        payload = raw_bytes(child(fr, "http2.data.data"))
                        pad = int(show(fr, "http2.pad_length", "0") or 0)
                        length = int(show(fr, "http2.length"))
                        if len(payload) != length - (pad + 1 if flags & 0x8 else 0):
                            raise DecodeError(
                                f"conn {conn['conn']} stream {sid}: DATA frame of {length} "
                                f"bytes shown with {len(payload)} payload bytes")
                        conn["data"].setdefault(f"{sid}/{side}", bytearray()).extend(payload)
                    elif ftype in (1, 9):  # HEADERS, CONTINUATION
                        headers = []
                        for h in fr:
                            if h.get("name") == "http2.header":
                                headers.append((show(h, "http2.header.name", ""),
                                                show(h, "http2.header.value", "")))
                        if side == "client":
                            for k, v in headers:
                                if k == ":path":
                                    st["method"] = v
                                elif k == ":authority":
                                    st["authority"] = v
                                elif k in METADATA_KEYS:
                                    st["metadata"][k] = v
                        else:
                            hd = dict(headers)
                            if "grpc-status" in hd:
                                st["trailers"] = {
                                    "grpc-status": int(hd["grpc-status"]),
                                    "grpc-message": urllib.parse.unquote(hd.get("grpc-message", "")),
                                    "ts": t,
                                }
                    elif ftype == 3:  # RST_STREAM
                        code = show(fr, "http2.rst_stream.error", None)
                        st["rst"] = {"from": side, "code": int(code) if code else None, "ts": t}
                    if end_stream and ftype in (0, 1):
                        st[f"{side}_end"] = True
            elif pname == "grpc":
                if current is None:
                    raise DecodeError(f"frame {show(geninfo, 'frame.number')}: gRPC message "
                                      "without an HTTP/2 frame before it")
                length = int(show(p, "grpc.message_length"))
                compressed = show(p, "grpc.compressed_flag", "0") not in ("0", "False")
                current[side].append({"bytes": length, "compressed": compressed, "ts": t,
                                      "message": None, "type": None,
                                      "frame": int(show(geninfo, "frame.number"))})
            elif pname == "protobuf":
                if current is None or not current[side] or current[side][-1]["type"] is not None:
                    raise DecodeError(f"frame {show(geninfo, 'frame.number')}: protobuf "
                                      "without a gRPC message before it")
                last = current[side][-1]
                last["type"] = show(p, "protobuf.message.name", "")
                last["message"] = render_message(p, repeated)

    # Cross-check tshark's gRPC messages against our own 5-byte framing of the DATA bytes.
    out = []
    for conn in sorted(conns.values(), key=lambda c: c["conn"]):
        streams = []
        for sid in sorted(conn["streams"]):
            st = conn["streams"][sid]
            for side in ("client", "server"):
                data = bytes(conn["data"].get(f"{sid}/{side}", b""))
                lengths, pos = [], 0
                while pos + 5 <= len(data):
                    n = int.from_bytes(data[pos + 1:pos + 5], "big")
                    lengths.append(n)
                    pos += 5 + n
                if pos != len(data):
                    raise DecodeError(f"conn {conn['conn']} h2 stream {sid} {side}: DATA bytes "
                                      f"end inside a gRPC message ({len(data)} bytes)")
                shown = [m["bytes"] for m in st[side]]
                if shown != lengths:
                    raise DecodeError(
                        f"conn {conn['conn']} h2 stream {sid} ({st['method']}) {side}: tshark "
                        f"dissected gRPC messages of {shown} bytes, the DATA frames hold {lengths}")
                for m in st[side]:
                    if m["message"] is None and m["bytes"] > 0:
                        raise DecodeError(f"conn {conn['conn']} h2 stream {sid} {side}: message "
                                          f"in frame {m['frame']} not decoded as protobuf")
                    if m["message"] is None:
                        m["message"] = {}
            streams.append(st)
        for st in streams:
            st["conn_closed"] = conn["closed"]
        out.append({"conn": conn["conn"], "client_port": conn["client_port"],
                    "goaway": conn["goaway"], "closed": conn["closed"], "streams": streams})
    return {"port": port, "connections": out}


# ---------------------------------------------------------------------------------------------
# logs


def load_log(path):
    """(calls, streams) of one wire log: each call attempt and each stream with its messages."""
    calls, streams, problems = [], {}, []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: not JSON: {e}")
                continue
            kind = line.get("kind", "call")
            where = f"{os.path.basename(path)}:{n}"
            if kind == "call":
                calls.append({"where": where, "line": line})
            elif kind in ("open", "send", "recv", "close"):
                sid = line.get("stream")
                st = streams.setdefault(sid, {"stream": sid, "open": None, "send": [],
                                              "recv": [], "close": None, "where": where})
                if kind in ("open", "close"):
                    if st[kind] is not None:
                        problems.append(f"{where}: second '{kind}' line for stream {sid}")
                    st[kind] = dict(line, where=where)
                else:
                    st[kind].append(dict(line, where=where))
            elif kind in ("connect", "disconnect"):
                continue  # a tap's connection lines: no gRPC exchange of their own
            else:
                problems.append(f"{where}: unknown kind {kind!r}")
    for st in streams.values():
        who = f"stream {st['stream']} (first line {st['where']})"
        if st["open"] is None:
            problems.append(f"{who}: no 'open' line")
        for kind in ("send", "recv"):
            seqs = [m.get("seq") for m in st[kind]]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{who}: '{kind}' seq numbers are {seqs}, want 1..{len(seqs)}")
        close = st["close"]
        if close is not None:
            if close.get("sent") != len(st["send"]):
                problems.append(f"{who}: close says sent {close.get('sent')}, "
                                f"the log has {len(st['send'])} 'send' lines")
            if close.get("received") != len(st["recv"]):
                problems.append(f"{who}: close says received {close.get('received')}, "
                                f"the log has {len(st['recv'])} 'recv' lines")
    return calls, list(streams.values()), problems


# ---------------------------------------------------------------------------------------------
# comparison


def diff(a, b, path, out, la="log", lb="capture"):
    """Differences between two JSON values, as 'path: log X, capture Y' lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{sub}: missing in {la}, {lb} has {json.dumps(b[k])[:200]}")
            elif k not in b:
                out.append(f"{sub}: {la} has {json.dumps(a[k])[:200]}, missing in {lb}")
            else:
                diff(a[k], b[k], sub, out, la, lb)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {la} has {len(a)} items, {lb} {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out, la, lb)
    elif type(a) is not type(b) or a != b:
        out.append(f"{path}: {la} {json.dumps(a)[:200]}, {lb} {json.dumps(b)[:200]}")


def status_of_capture(st):
    tr = st["trailers"]
    if tr is None:
        return None
    if tr["grpc-status"] == 0:
        return "OK"
    code = tr["grpc-status"]
    name = GRPC_CODES[code] if code < len(GRPC_CODES) else str(code)
    return {"code": name, "message": tr["grpc-message"]}


def status_of_log(status):
    if status == "OK" or status is None:
        return status
    return {"code": status.get("code"), "message": status.get("message")}


def call_diffs(call, st):
    line, out = call["line"], []
    if line.get("method") != st["method"]:
        out.append(f"method: log {line.get('method')}, capture {st['method']}")
        return out
    if len(st["client"]) != 1:
        out.append(f"capture stream carries {len(st['client'])} request messages, a unary call 1")
    else:
        req = st["client"][0]
        if line.get("request") != REDACTED:  # Authenticate: only the size is logged
            diff(line.get("request"), req["message"], "request", out)
        if line.get("request_bytes") != req["bytes"]:
            out.append(f"request_bytes: log {line.get('request_bytes')}, capture {req['bytes']}")
    log_status = status_of_log(line.get("status"))
    if isinstance(log_status, dict) and log_status.get("code") == "Cancelled" \
            and line.get("response") is None and st["trailers"] is None:
        # Dropped by the caller before the answer: the wire must show the client giving up
        # (RST_STREAM CANCEL, or the connection closed); an answer may have crossed it unread.
        rst = st["rst"]
        if not (rst and rst["from"] == "client" and rst["code"] == H2_CANCEL) \
                and "client" not in st.get("conn_closed", {}):
            out.append("status: log says Cancelled, the capture has no RST_STREAM CANCEL from "
                       "the client and the connection stayed open")
        return out + metadata_diffs(line, st)
    resp = st["server"][0] if len(st["server"]) == 1 else None
    if len(st["server"]) > 1:
        out.append(f"capture stream carries {len(st['server'])} response messages")
    if line.get("response") != REDACTED:
        diff(line.get("response"), resp["message"] if resp else None, "response", out)
    want_bytes = resp["bytes"] if resp else 0
    if line.get("response_bytes") != want_bytes:
        out.append(f"response_bytes: log {line.get('response_bytes')}, capture {want_bytes}")
    cap_status = status_of_capture(st)
    if cap_status is not None or log_status == "OK":
        diff(log_status, cap_status, "status", out)
    elif st["rst"] is None and st["server_end"]:
        out.append("status: the capture's stream ended without grpc-status")
    return out + metadata_diffs(line, st)


def metadata_diffs(line, st):
    out = []
    if "metadata" in line:
        diff(redacted(line.get("metadata") or {}), redacted(st["metadata"]), "metadata", out)
    if "authority" in line and line["authority"] != st["authority"]:
        out.append(f"authority: log {line['authority']}, capture {st['authority']}")
    return out


def redacted(metadata):
    return {k: ("<redacted>" if k == "token" else v) for k, v in metadata.items()}


CLOSE_HOW = ("trailers", "cancelled", "reset", "connection_lost")


def stream_diffs(ls, st):
    """Differences between a logged stream and a captured HTTP/2 stream."""
    out = []
    opened = ls["open"] or {}
    method = opened.get("method") or (ls["close"] or {}).get("method")
    if method != st["method"]:
        return [f"method: log {method}, capture {st['method']}"]
    for line in ls["send"] + ls["recv"] + ([ls["close"]] if ls["close"] else []):
        if line.get("method") not in (None, method):
            out.append(f"{line['where']}: method {line.get('method')} on a {method} stream")
    if "metadata" in opened:
        diff(redacted(opened.get("metadata") or {}), redacted(st["metadata"]), "open.metadata", out)
    if "authority" in opened and opened["authority"] != st["authority"]:
        out.append(f"open.authority: log {opened['authority']}, capture {st['authority']}")
    close = ls["close"]
    how = close.get("how") if close else None
    if close is not None and how not in CLOSE_HOW:
        out.append(f"close.how: {how!r} is none of {CLOSE_HOW}")
    # Messages the process never read (it was cancelled or the transport died, or the log
    # ended while the stream was open) may follow the logged ones in the capture.
    may_have_unread = how in (None, "cancelled", "connection_lost")
    may_have_unsent = how in (None, "connection_lost")
    for kind, side, loose in (("send", "client", may_have_unsent), ("recv", "server", may_have_unread)):
        logged = {line.get("seq"): line for line in ls[kind]}
        captured = st[side]
        # Message k of the capture (in this direction) is the log's line with seq k.
        for k, msg in enumerate(captured, 1):
            line = logged.pop(k, None)
            if line is None:
                if loose and k > len(ls[kind]):
                    break  # not read (or not sent) before the stream was dropped
                out.append(f"{kind} seq {k}: missing from the log; the capture has "
                           f"{json.dumps(msg['message'])[:300]} ({msg['bytes']} bytes)")
                continue
            sub = []
            diff(line.get("message"), msg["message"], f"{kind}[seq {k}].message", sub)
            if line.get("bytes") != msg["bytes"]:
                sub.append(f"{kind}[seq {k}].bytes: log {line.get('bytes')}, capture {msg['bytes']}")
            out.extend(f"{line['where']}: {d}" for d in sub)
        for k, line in sorted(logged.items(), key=lambda kv: str(kv[0])):
            out.append(f"{line['where']}: {kind} seq {k}: not in the capture "
                       f"(it has {len(captured)} messages in this direction)")
    if how == "trailers":
        cap = status_of_capture(st)
        if cap is None:
            out.append("close: log says trailers, the capture has no grpc-status on this stream")
        else:
            diff(status_of_log(close.get("status")), cap, "close.status", out)
    elif how == "cancelled":
        if st["trailers"] is not None and st["trailers"]["ts"] < (st["rst"] or {}).get("ts", float("inf")):
            out.append("close: log says cancelled, but the server ended the stream with "
                       f"grpc-status {st['trailers']['grpc-status']} first")
        elif st["rst"] is None and "client" in st["conn_closed"]:
            # The process dropped the stream and exited before h2 wrote the RST_STREAM: on the
            # wire the stream ends with the client closing the connection.
            pass
        elif st["rst"] is None or st["rst"]["from"] != "client":
            out.append("close: log says cancelled, the capture has no RST_STREAM from the client "
                       "and the client did not close the connection")
        elif st["rst"]["code"] != H2_CANCEL:
            out.append(f"close: log says cancelled, the client's RST_STREAM has code {st['rst']['code']}")
    elif how == "reset":
        if st["rst"] is None or st["rst"]["from"] != "server":
            out.append("close: log says reset, the capture has no RST_STREAM from the server")
    elif how is None:
        # Every stream of a process that ended normally was ended, and logged as such.
        ended = ("grpc-status " + str(st["trailers"]["grpc-status"]) if st["trailers"] else
                 f"RST_STREAM from the {st['rst']['from']}" if st["rst"] else
                 "the connection closing")
        out.append(f"close line missing (the capture's stream ended with {ended})")
    return out


def describe(st):
    first = st["client"][0]["message"] if st["client"] else None
    return (f"conn {st['conn']} h2 stream {st['h2_stream']} {st['method']} "
            f"(request {json.dumps(first)[:300]})")


def start_time(call):
    line = call["line"]
    ts = line.get("ts", "")
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)Z$", ts)
    if not m:
        return 0.0
    secs = calendar.timegm((int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), 0))
    return secs + float(m[6]) - float(line.get("latency_ms") or 0) / 1000.0


def compare(decoded, log_paths):
    """The list of differences (empty when the logs and the capture agree)."""
    problems = []
    logs = []
    for path in log_paths:
        calls, streams, p = load_log(path)
        problems.extend(p)
        logs.append({"path": path, "calls": calls, "streams": streams})

    captured = []  # every captured gRPC exchange, with its connection
    for conn in decoded["connections"]:
        for st in conn["streams"]:
            if st["method"] is None and not st["client"] and not st["server"]:
                continue
            st = dict(st, conn=conn["conn"])
            st["unary"] = not is_stream_method(st["method"], logs)
            captured.append(st)

    # Attribute each connection to the log whose items it matches exactly the most.
    owner = {}
    for conn in decoded["connections"]:
        best, best_n = None, 0
        for li, log in enumerate(logs):
            n = 0
            for st in (s for s in captured if s["conn"] == conn["conn"]):
                items = log["calls"] if st["unary"] else log["streams"]
                check = call_diffs if st["unary"] else stream_diffs
                if any(not check(it, st) for it in items):
                    n += 1
            if n > best_n:
                best, best_n = li, n
        owner[conn["conn"]] = best

    used = set()
    for li, log in enumerate(logs):
        mine = [st for st in captured if owner.get(st["conn"]) == li]
        for kind, items, check in (("call", log["calls"], call_diffs),
                                   ("stream", log["streams"], stream_diffs)):
            if kind == "call":
                items = sorted(items, key=start_time)
            for it in items:
                cands = [st for st in mine if id(st) not in used and st["unary"] == (kind == "call")]
                scored = []
                for st in cands:
                    d = check(it, st)
                    scored.append((len(d) if not d or not d[0].startswith("method:") else 10**6,
                                   st["first_ts"], d, st))
                exact = [s for s in scored if s[0] == 0]
                if exact:
                    used.add(id(exact[0][3]))
                    continue
                label = (f"{it['where']} ({it['line'].get('method')} call {it['line'].get('call')} "
                         f"attempt {it['line'].get('attempt')})" if kind == "call" else
                         f"stream {it['stream']} ({(it['open'] or {}).get('method')}, from {it['where']})")
                near = [s for s in scored if s[0] < 10**6]
                if not near and kind == "call" and isinstance(it["line"].get("status"), dict) \
                        and it["line"]["status"].get("cause") and it["line"].get("response") is None:
                    continue  # a transport failure before anything was sent: nothing on the wire
                if not near:
                    problems.append(f"{os.path.basename(log['path'])}: {label}: no such "
                                    f"{kind} in the capture")
                    continue
                near.sort(key=lambda s: (s[0], s[1]))
                _, _, d, st = near[0]
                used.add(id(st))
                problems.append(f"{label} differs from the capture's {describe(st)}:\n    "
                                + "\n    ".join(d))
    for st in captured:
        if id(st) not in used:
            who = owner.get(st["conn"])
            where = os.path.basename(logs[who]["path"]) if who is not None else "no log"
            problems.append(f"missing from the log ({where}): {describe(st)}, "
                            f"{len(st['server'])} response message(s)")
    return problems


STREAM_METHODS = {
    "/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive",
    "/v3electionpb.Election/Observe", "/etcdserverpb.Maintenance/Snapshot",
}


def is_stream_method(method, logs):
    if method in STREAM_METHODS:
        return True
    return any((s["open"] or {}).get("method") == method for log in logs for s in log["streams"])


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["decode", "compare", "check"])
    ap.add_argument("--pcap")
    ap.add_argument("--port", type=int)
    ap.add_argument("--proto")
    ap.add_argument("--out")
    ap.add_argument("--decoded")
    ap.add_argument("--log", action="append", default=[])
    a = ap.parse_args()
    if a.mode in ("decode", "check"):
        if not (a.pcap and a.port and a.proto):
            ap.error("decode needs --pcap, --port and --proto")
        try:
            decoded = decode(a.pcap, a.port, a.proto)
        except DecodeError as e:
            print(f"capture cannot be decoded: {e}", file=sys.stderr)
            return 2
        if a.out:
            with open(a.out, "w", encoding="utf-8") as f:
                json.dump(decoded, f)
        if a.mode == "decode":
            n = sum(len(c["streams"]) for c in decoded["connections"])
            print(f"decoded {len(decoded['connections'])} connections, {n} HTTP/2 streams")
            return 0
    else:
        if not a.decoded:
            ap.error("compare needs --decoded")
        with open(a.decoded, encoding="utf-8") as f:
            decoded = json.load(f)
    if not a.log:
        ap.error("no --log given")
    problems = compare(decoded, a.log)
    n_calls = sum(1 for c in decoded["connections"] for s in c["streams"] if s["method"])
    if problems:
        print(f"wire log and capture DIFFER ({len(problems)} problems):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"wire log and capture agree: {n_calls} gRPC exchanges on "
          f"{len(decoded['connections'])} connections, {len(a.log)} logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
