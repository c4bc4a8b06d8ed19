#!/usr/bin/env python3
"""Writes the starting inputs of srgate's fuzz targets into fuzz/corpus/<target>/ (the
working corpus, not committed). The committed seeds in fuzz/seeds/<target>/ are a
minimized set of what the fuzzers grew from these (see fuzz/README.md).

Usage: python3 fuzz/seeds/generate.py [OUT_DIR]   (default: fuzz/corpus)
"""
import hashlib
import hmac
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def crlf(lines):
    return "\r\n".join(lines) + "\r\n"


FP = ":".join("%02X" % b for b in hashlib.sha256(b"browser certificate").digest())

# --- browser SDP offers (sdp_offer) --------------------------------------------------
chrome = crlf([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS stream1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0",
    "a=ice-ufrag:brWs",
    "a=ice-pwd:mnopqrstuvwxyz012345ab",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + FP,
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=sendrecv",
    "a=msid:stream1 track1",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:abcdEFGHijklMNOP",
    "a=ssrc:3735928559 msid:stream1 track1",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=ice-ufrag:brWs",
    "a=ice-pwd:mnopqrstuvwxyz012345ab",
    "a=fingerprint:sha-256 " + FP,
    "a=setup:actpass",
    "a=mid:1",
    "a=sctp-port:5000",
])
put("sdp_offer", "chrome", chrome)
firefox = crlf([
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-99.0 1234567890 0 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=fingerprint:sha-256 " + FP,
    "a=fingerprint:sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33",
    "a=group:BUNDLE 0",
    "a=ice-options:trickle",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101",
    "c=IN IP4 0.0.0.0",
    "a=sendonly",
    "a=ice-pwd:0123456789abcdef0123456789abcdef",
    "a=ice-ufrag:f00dcafe",
    "a=mid:0",
    "a=rtcp-mux",
    "a=rtpmap:109 opus/48000/2",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=setup:actpass",
    "a=ssrc:1111 cname:{abc}",
])
put("sdp_offer", "firefox", firefox)
put("sdp_offer", "lf_session_level", "\n".join([
    "v=0", "o=- 1 1 IN IP6 ::1", "s=-", "t=0 0",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuv",
    "a=fingerprint:SHA-512 " + ":".join(["AB"] * 64), "a=setup:passive",
    "m=video 0 UDP/TLS/RTP/SAVPF 96", "a=mid:v",
    "m=audio 1 UDP/TLS/RTP/SAVP 0 8", "a=rtcp-mux", "a=recvonly", "",
]))

# --- SIP-side SDP (sdp_sip) ---------------------------------------------------------
put("sdp_sip", "phone", crlf([
    "v=0", "o=- 123 456 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0",
    "m=audio 10000 RTP/AVP 9 0 8 101", "a=rtpmap:9 G722/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv",
]))
put("sdp_sip", "pbx_ipv6_hold", crlf([
    "v=0", "o=PBX 1 2 IN IP6 2001:db8::10", "s=call",
    "t=0 0", "m=video 0 RTP/AVP 96",
    "m=audio 20000 RTP/AVP 96 8 97", "c=IN IP6 2001:db8::10",
    "a=rtpmap:96 opus/48000/2", "a=rtpmap:97 telephone-event/8000", "a=ptime:30",
    "a=sendonly",
]))
put("sdp_sip", "srtp_refused", crlf([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "c=IN IP4 0.0.0.0/127", "t=0 0",
    "m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
    "m=audio 4002 RTP/AVPF 0 18", "a=inactive",
]))
put("sdp_sip", "best_effort_srtp", crlf([
    "v=0", "o=- 7 7 IN IP4 192.0.2.11", "s=-", "c=IN IP4 192.0.2.11", "t=0 0",
    "m=audio 10002 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:bad", "a=sendrecv",
]))

# --- STUN (stun) ----------------------------------------------------------------------
def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def stun(msg_type, tid, attrs, pwd=None, fingerprint=True):
    body = b"".join(attr(t, v) for t, v in attrs)
    head = lambda extra: struct.pack("!HH", msg_type, len(body) + extra) + b"\x21\x12\xa4\x42" + tid
    if pwd is not None:
        mac = hmac.new(pwd.encode(), head(24) + body, hashlib.sha1).digest()
        body += attr(0x0008, mac)
    if fingerprint:
        crc = (zlib.crc32(head(8) + body) ^ 0x5354554E) & 0xFFFFFFFF
        body += attr(0x8028, struct.pack("!I", crc))
    return head(0) + body


TID = bytes(range(1, 13))
check = [
    (0x0006, b"srgT:brWs"),
    (0x0024, struct.pack("!I", 0x6E7F1EFF)),
    (0x802A, struct.pack("!Q", 0x1122334455667788)),
    (0x0025, b""),
]
put("stun", "binding_request", stun(0x0001, TID, check, pwd="0123456789abcdefghijkl"))
put("stun", "binding_request_bad_mi", stun(0x0001, TID, check, pwd="wrong"))
put("stun", "binding_response", stun(0x0101, TID, [
    (0x0020, struct.pack("!BBH", 0, 1, 50000 ^ 0x2112) + bytes(a ^ b for a, b in zip(bytes([198, 51, 100, 7]), b"\x21\x12\xa4\x42"))),
], pwd="mnopqrstuvwxyz012345ab"))
put("stun", "no_integrity", stun(0x0001, TID, [(0x0006, b"srgT:brWs")], fingerprint=False))
put("stun", "dtls_hello", bytes([22, 0xFE, 0xFD]) + bytes(10) + b"\x00\x10" + bytes(16))

# --- RTP (rtp) --------------------------------------------------------------------------
def rtp(pt, seq, ts, ssrc, payload, marker=False, csrcs=(), ext=None, pad=0):
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext is not None else 0) | len(csrcs)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        profile, data = ext
        out += struct.pack("!HH", profile, len(data) // 4) + data
    out += payload
    if pad:
        out += bytes(pad - 1) + bytes([pad])
    return out


put("rtp", "opus", rtp(111, 1234, 960 * 7, 0xDEADBEEF, bytes([0xFC]) + bytes(range(40)), marker=True))
put("rtp", "ext_csrc_pad", rtp(0, 1, 160, 0xAABBCCDD, b"\xff" * 160, csrcs=(1, 2),
                               ext=(0xBEDE, b"\x10\x7f\x00\x00"), pad=4))
put("rtp", "telephone_event", rtp(101, 7, 8000, 0x01020304, bytes([5, 0x8A, 0x03, 0x20])))

# --- RTCP (rtcp) ----------------------------------------------------------------------
def rtcp(count, pt, body, pad=0):
    if pad:
        body += bytes(pad - 1) + bytes([pad])
    return struct.pack("!BBH", 0x80 | (0x20 if pad else 0) | count, pt, len(body) // 4) + body


block = struct.pack("!IB", 0xAABBCCDD, 25) + (0xFFFFFE).to_bytes(3, "big") + struct.pack("!IIII", 0x00010005, 120, 0x4A5B6C80, 65536)
sr = rtcp(1, 200, struct.pack("!IQIII", 0x11223344, 0xE94A5B6C80000000, 960, 50, 8000) + block)
sdes = rtcp(1, 202, struct.pack("!I", 0x11223344) + bytes([1, 6]) + b"srgate" + bytes(4))
put("rtcp", "sr_sdes", sr + sdes)
put("rtcp", "rr_two_blocks_bye", rtcp(2, 201, struct.pack("!I", 0x55) + block + block) +
    rtcp(1, 203, struct.pack("!I", 0x55)))
put("rtcp", "rr_pli_padded", rtcp(0, 201, struct.pack("!I", 9)) +
    rtcp(1, 206, struct.pack("!II", 9, 0xAABBCCDD), pad=4))

# --- browser protocol (signal) -------------------------------------------------------
def token(secret, user, expiry):
    mac = hmac.new(secret, b"srgate-login-v1\n%s\n%d" % (user.encode(), expiry), hashlib.sha256).hexdigest()
    return "v1.%d.%s" % (expiry, mac)


RS = "\x1e"
sdp_json = chrome.replace("\r\n", "\\r\\n")
put("signal", "login", '{"type":"login","user":"1002","token":"%s"}' % token(b"fuzz-secret-0123456789", "1002", 1_900_000_000))
put("signal", "session", RS.join([
    '{"type":"ping"}',
    '{"type":"invite","id":"c1","callee":"1005","sdp":"%s","content":"hello","channelId":"room-1"}' % sdp_json,
    '{"type":"dtmf","id":"c1","digits":"12#*A"}',
    '{"type":"hangup","id":"c1"}',
]))
put("signal", "answers", RS.join([
    '{"type":"accept","id":"c2","sdp":"v=0\\r\\n","response":"ok"}',
    '{"type":"refuse","id":"c3","response":"busy"}',
    '{"type":"cancel","id":"c4"}',
    '{"type":"login","user":"bob@example","token":"v1.1.00"}',
    '{"type":"what","id":""}',
]))

# --- HTTP heads (web_head) -------------------------------------------------------------
put("web_head", "upgrade", crlf([
    "GET /ws HTTP/1.1", "Host: 127.0.0.1:8080", "Connection: Upgrade", "Pragma: no-cache",
    "Upgrade: websocket", "Origin: http://127.0.0.1:8080", "Sec-WebSocket-Version: 13",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits", "",
]) + "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
put("web_head", "upgrade_tls_origin", crlf([
    "GET /ws?v=1 HTTP/1.1", "Host: app.example", "Upgrade: WebSocket", "Connection: keep-alive, Upgrade",
    "Origin: https://app.example:443", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==", "",
]))
put("web_head", "page", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nAccept: */*\r\n\r\n")
put("web_head", "post_partial", "POST /srgate.js HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n")

# --- login tokens (token) ---------------------------------------------------------------
# minted with another secret than the target's: a fuzzed token must never verify
put("token", "user_token", "1001\n" + token(b"not-the-secret", "1001", 1_800_000_000) + "\n\x00\x00")
put("token", "edit", "\x10\x20\x30\x40\x50\x60\x70\x01\x45\x41alice@example\nv1.5.zz")

# --- configuration (config) -------------------------------------------------------------
with open(os.path.join(ROOT, "conf", "srgate.ini"), encoding="utf-8") as f:
    put("config", "srgate_ini", f.read())
put("config", "proxy_tls", "\n".join([
    "[global]", "sip_svr = sips:[2001:db8::1]:5071", "public_ip = 203.0.113.5", "shards = 2",
    "[sip]", "listen = 0.0.0.0:5086", "digest = sha256,md5", "domain = example.org",
    "[proxy]", "on = 1", "sip_account = 1000", 'sip_pwd = " p ;w#d "', "expires = 600",
    "[rtm2sip]", "acc_rule = 1005;10[06-19];2[00-50]", "allow_any = yes",
    "[users]", "alice = a#b", 'bob = "x ;y"',
    "[webrtc]", "listen = 127.0.0.1:8080", "udp = 0.0.0.0:20000",
    "allowed_origins = https://app.example, http://b:8080", "max_conns_per_ip = 8",
    "[media]", "rtp_ports = 30000-30100", "codecs = pcma, opus", "rtp_timeout = 7",
    "[auth]", "secret = 0123456789abcdef0", "[api]", "listen =",
    "[log]", "level = verbose", "file =", "max_file_size = 5", "",
]))
put("config", "rtx_conf", "[global]\r\nappid = x\r\nsip_svr = 192.0.2.1:5060\r\n[rtc]\r\nfoo = 1\r\n[users]\r\n1001 = pw ; comment\r\n")

# --- RTMP server replies (rtmp) ---------------------------------------------------------
# first byte: where the target cuts the input; then what a server sends after the handshake
def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack("!H", len(b)) + b


def amf_num(n):
    return b"\x00" + struct.pack("!d", n)


def amf_obj(props):
    out = b"\x03"
    for k, v in props:
        out += struct.pack("!H", len(k)) + k.encode() + v
    return out + b"\x00\x00\x09"


def chunk(csid, type_id, stream_id, body, size=128):
    out = bytes([csid]) + (0).to_bytes(3, "big") + len(body).to_bytes(3, "big") + bytes([type_id])
    out += struct.pack("<I", stream_id)
    for i in range(0, len(body), size):
        if i:
            out += bytes([0xC0 | csid])
        out += body[i:i + size]
    return out


connect_ok = amf_str("_result") + amf_num(1) + amf_obj([("fmsVer", amf_str("FMS/3,0,1,123"))]) + amf_obj([
    ("level", amf_str("status")), ("code", amf_str("NetConnection.Connect.Success")),
    ("description", amf_str("Connection succeeded.")), ("objectEncoding", amf_num(0))])
created = amf_str("_result") + amf_num(4) + b"\x05" + amf_num(1)
started = amf_str("onStatus") + amf_num(0) + b"\x05" + amf_obj([
    ("level", amf_str("status")), ("code", amf_str("NetStream.Publish.Start")), ("description", amf_str("Start"))])
control = (chunk(2, 5, 0, struct.pack("!I", 2500000)) + chunk(2, 6, 0, struct.pack("!IB", 2500000, 2))
           + chunk(2, 1, 0, struct.pack("!I", 4096)))
session = control + chunk(3, 20, 0, connect_ok, 4096) + chunk(3, 20, 0, created, 4096) + chunk(5, 20, 1, started, 4096)
put("rtmp", "session", b"\x07" + session)
put("rtmp", "session_whole", b"\xff" + session + chunk(2, 4, 0, bytes([0, 6, 0, 0, 0, 1]), 4096))
put("rtmp", "bad_name", b"\x10" + control + chunk(3, 20, 0, connect_ok, 4096) + chunk(3, 20, 0, created, 4096)
    + chunk(5, 20, 1, amf_str("onStatus") + amf_num(0) + b"\x05" + amf_obj([
        ("level", amf_str("error")), ("code", amf_str("NetStream.Publish.BadName"))]), 4096))
put("rtmp", "url", b"\x00rtmps://[::1]:443/app/inst/")

# sip_endpoint: calls from the trusted PBX (proxy mode) for an app user and for ring groups
# 301 and 342 (the harness's `[groups]`), with and without an offer; a CANCEL and a BYE of
# the same dialog (the harness feeds each input twice and answers the calls it is offered).
SIP_SDP = crlf(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
                "m=audio 40000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"])


def sip_request(method, user, cseq, body="", to_tag=""):
    lines = [f"{method} sip:{user}@127.0.0.1:5086 SIP/2.0",
             "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfz1",
             "Max-Forwards: 70", "From: <sip:1006@127.0.0.1>;tag=pbx1",
             f"To: <sip:{user}@127.0.0.1>{to_tag}", "Call-ID: fz1@pbx",
             f"CSeq: {cseq} {method}", "Contact: <sip:1006@127.0.0.1:5060>"]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return crlf(lines) + "\r\n" + body


for user in ["1001", "301", "342"]:
    put("sip_endpoint", f"invite_{user}", sip_request("INVITE", user, 1, SIP_SDP))
    put("sip_endpoint", f"invite_{user}_offerless", sip_request("INVITE", user, 1))
    put("sip_endpoint", f"cancel_{user}", sip_request("CANCEL", user, 1))
put("sip_endpoint", "bye", sip_request("BYE", "301", 2, to_tag=";tag=x"))


# h264: RTP packets of a phone's H.264 (RFC 6184), each after a 2-byte length
def rtp(seq, ts, marker, payload):
    return struct.pack(">BBHII", 0x80, 96 | (0x80 if marker else 0), seq, ts, 0x12345678) + payload


def framed(packets):
    return b"".join(struct.pack(">H", len(p)) + p for p in packets)


SPS = bytes([0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02])
PPS = bytes([0x68, 0xce, 0x3c, 0x80])
stap = bytes([0x78]) + struct.pack(">H", len(SPS)) + SPS + struct.pack(">H", len(PPS)) + PPS
idr = bytes(range(200))
put("h264", "stap_fu_single", framed([
    rtp(1, 900, False, stap),
    rtp(2, 900, False, bytes([0x7c, 0x85]) + idr[:100]),
    rtp(3, 900, True, bytes([0x7c, 0x45]) + idr[100:]),
    rtp(4, 3900, True, bytes([0x41, 0x9a, 0x01])),
]))
put("h264", "lost_fragment", framed([
    rtp(10, 100, False, bytes([0x7c, 0x85, 1, 2])),
    rtp(12, 100, True, bytes([0x7c, 0x45, 3])),
    rtp(13, 200, True, bytes([0x65, 1, 2, 3])),
]))


# sip_ws: frames of a SIP-over-WebSocket session (0x1E between them; first byte even: SIP
# from the client, odd: a JSON event of the call layer)
def ws_request(method, cseq, call_id, extra="", body="", to_tag=""):
    head = [
        f"{method} sip:1006@fuzz.example SIP/2.0",
        f"Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK{call_id}{cseq}",
        "Max-Forwards: 70",
        "From: <sip:1003@fuzz.example>;tag=ft",
        f"To: <sip:1003@fuzz.example>{to_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:k2@abc.invalid;transport=ws>",
    ] + ([extra] if extra else [])
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(head) + "\r\n\r\n" + body


AUTH = 'Authorization: Digest username="1003", realm="f", nonce="1", uri="sip:x", response="0"'
REG = ws_request("REGISTER", 1, "reg", AUTH + "\r\nExpires: 600")
ANS = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
put("sip_ws", "call_out", b"\x1e".join(s.encode() for s in [
    "\x00" + REG,
    "\x00" + ws_request("INVITE", 1, "c1", body=ANS),
    '\x01{"type":"local_state","id":"ws1","state":"SENT_TO_REMOTE","sdp":"v=0\\r\\n"}',
    '\x01{"type":"local_state","id":"ws1","state":"ACCEPTED_BY_REMOTE"}',
    "\x00" + ws_request("INVITE", 2, "c1", body=ANS.replace("sendrecv", "sendonly"), to_tag=";tag=1"),
    "\x00" + ws_request("INFO", 3, "c1", extra="Content-Type: application/dtmf-relay", body="Signal=5\r\n"),
    '\x01{"type":"dtmf","id":"ws1","digits":"#"}',
    "\x00" + ws_request("BYE", 4, "c1"),
]))
put("sip_ws", "call_in", b"\x1e".join(s.encode() for s in [
    "\x00" + REG,
    '\x01{"type":"remote_invitation","id":"in1","caller":"1006","callerName":"Door"}',
    '\x01{"type":"offer","id":"in1","sdp":"v=0\\r\\n"}',
    '\x01{"type":"remote_state","id":"in1","state":"CANCELED","reason":"ANSWERED_ELSEWHERE"}',
]))
