// A stand-in for srgate, for testing the browser side alone: it serves web/index.html and
// web/srgate.js, speaks the JSON protocol of docs/protocol.md over a minimal WebSocket server of
// its own (RFC 6455 text frames), and answers calls to `echo` by handing the offer to an
// "echo peer" page (a second tab with an RTCPeerConnection that sends back what it receives).
// It is a test double, not a reference: srgate's behaviour is whatever srgate does.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_FRAME = 65536;
const USER = /^[A-Za-z0-9_.+@-]{1,64}$/;

const ECHO_PAGE = `<!doctype html><title>echo peer</title><script>
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
const pcs = new Map();
window.echoLog = [];
ws.onopen = () => ws.send(JSON.stringify({ type: 'echo_peer' }));
ws.onmessage = async (ev) => {
  const m = JSON.parse(ev.data);
  if (m.type === 'offer') {
    const pc = new RTCPeerConnection();
    pcs.set(m.id, pc);
    await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
    const tr = pc.getTransceivers()[0];
    tr.direction = 'sendrecv';
    await tr.sender.replaceTrack(tr.receiver.track); // send back what arrives
    // Chromium decodes a remote audio track only while a media element plays it.
    const el = new Audio();
    el.muted = true;
    el.srcObject = new MediaStream([tr.receiver.track]);
    el.play().catch(() => {});
    pc.echoElement = el;
    await pc.setLocalDescription(await pc.createAnswer());
    // Like srgate's answer, this one carries its candidates: wait (bounded) for gathering.
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
      setTimeout(r, 3000);
    });
    window.echoLog.push('answered ' + m.id);
    ws.send(JSON.stringify({ type: 'answer', id: m.id, sdp: pc.localDescription.sdp }));
  } else if (m.type === 'close') {
    const pc = pcs.get(m.id);
    if (pc) { pc.close(); pcs.delete(m.id); window.echoLog.push('closed ' + m.id); }
  }
};
</script>`;

/** Minimal RFC 6455 server side of one connection: text frames, close, ping. */
class WsConn {
  constructor(socket, onText, onClose) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.closed = false;
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._parse(onText);
    });
    socket.on('close', () => { this.closed = true; onClose(); });
    socket.on('error', () => {});
  }

  _parse(onText) {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (len > MAX_FRAME + 1024) { this.close(1009); return; }
      const maskOff = off;
      if (masked) off += 4;
      if (b.length < off + len) return;
      const payload = Buffer.from(b.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[maskOff + (i & 3)];
      this.buf = b.subarray(off + len);
      if (opcode === 1) onText(payload.toString('utf8'), len);
      else if (opcode === 8) { this.close(1000); return; }
      else if (opcode === 9) this._frame(10, payload);
    }
  }

  _frame(opcode, payload) {
    if (this.closed) return;
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | opcode, n])
      : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255])
        : (() => { const h = Buffer.alloc(10); h[0] = 0x80 | opcode; h[1] = 127; h.writeBigUInt64BE(BigInt(n), 2); return h; })();
    this.socket.write(Buffer.concat([head, payload]));
  }

  send(obj) { this._frame(1, Buffer.from(JSON.stringify(obj))); }

  close(code = 1000) {
    if (this.closed) return;
    this._frame(8, Buffer.from([code >> 8, code & 255]));
    this.closed = true;
    this.socket.end();
  }

  /** Drops the TCP connection without a close frame (a network failure). */
  drop() { this.closed = true; this.socket.destroy(); }
}

/**
 * Starts the fake gateway on 127.0.0.1 (HTTPS + WSS when `tls` = {cert, key} PEM). Returns { url, port, log, conns, invite, dropUser,
 * close }. `invite(user, {caller, content})` sends that user a remote_invitation;
 * `dropUser(user)` cuts its socket (to test reconnecting).
 */
export async function startFakeGate({ port = 0, tls = null } = {}) {
  const log = [];
  const users = new Map(); // user → WsConn
  const calls = new Map(); // id → {user, answered, incoming}
  let echoPeer = null;
  const pendingAnswers = new Map(); // id → (sdp) => void

  const handler = (req, res) => {
    const path = (req.url || '/').split('?')[0];
    const files = { '/': ['index.html', 'text/html'], '/index.html': ['index.html', 'text/html'], '/srgate.js': ['srgate.js', 'text/javascript'] };
    if (files[path]) {
      res.writeHead(200, { 'content-type': files[path][1] + '; charset=utf-8' });
      res.end(readFileSync(join(WEB, files[path][0])));
    } else if (path === '/echo.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(ECHO_PAGE);
    } else if (path === '/blank.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>blank</title>');
    } else {
      res.writeHead(404);
      res.end();
    }
  };
  const server = tls ? createTlsServer(tls, handler) : createServer(handler);

  server.on('upgrade', (req, socket) => {
    const key = req.headers['sec-websocket-key'];
    if ((req.url || '').split('?')[0] !== '/ws' || !key) { socket.destroy(); return; }
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    let user = null;
    const conn = new WsConn(socket, (text, len) => onText(text, len), () => {
      if (user && users.get(user) === conn) users.delete(user);
      if (echoPeer === conn) echoPeer = null;
    });
    const err = (code, message, id) => conn.send(id ? { type: 'error', code, message, id } : { type: 'error', code, message });

    function onText(text, len) {
      if (len > MAX_FRAME) return err('TOO_LARGE', 'frame too large');
      let m;
      try { m = JSON.parse(text); } catch { return err('BAD_JSON', 'not JSON'); }
      log.push({ from: user || '?', msg: Object.assign({}, m, m.sdp ? { sdp: `(${m.sdp.length})` } : {}) });
      const id = typeof m.id === 'string' ? m.id : undefined;
      switch (m.type) {
        case 'echo_peer': echoPeer = conn; return;
        case 'answer': { const f = pendingAnswers.get(m.id); if (f) f(m.sdp); return; }
        case 'ping': return conn.send({ type: 'pong' });
        case 'login': {
          if (typeof m.user !== 'string' || !USER.test(m.user)) return err('BAD_REQUEST', 'bad user');
          if (m.token === 'bad') return err('AUTH_FAILED', 'bad or expired token');
          const old = users.get(m.user);
          if (old && old !== conn) { old.send({ type: 'error', code: 'KICKED', message: 'logged in elsewhere' }); old.close(); }
          user = m.user;
          users.set(user, conn);
          return conn.send({ type: 'login_ok', user });
        }
        case undefined: return err('BAD_REQUEST', 'no type');
        default: break;
      }
      if (!['invite', 'cancel', 'accept', 'refuse', 'hangup', 'dtmf'].includes(m.type)) return err('UNKNOWN_TYPE', 'unknown type', id);
      if (!user) return err('NOT_LOGGEDIN', 'log in first', id);
      if (!id) return err('BAD_REQUEST', 'id missing');
      const call = calls.get(id);
      const send = (obj) => { const c = users.get(call ? call.user : user); if (c) c.send(obj); };
      switch (m.type) {
        case 'invite': {
          if (typeof m.callee !== 'string' || typeof m.sdp !== 'string') return err('BAD_REQUEST', 'callee and sdp required', id);
          if (call) return err('BAD_REQUEST', 'id in use', id);
          if (m.callee !== 'echo' || !echoPeer) return send({ type: 'local_state', id, state: 'FAILURE', error: 'PEER_OFFLINE' });
          const c = { user, answered: false, incoming: false };
          calls.set(id, c);
          pendingAnswers.set(id, (sdp) => {
            pendingAnswers.delete(id);
            if (!calls.has(id)) return;
            const to = users.get(c.user);
            if (!to) return;
            to.send({ type: 'local_state', id, state: 'SENT_TO_REMOTE', sdp });
            c.answered = true;
            to.send({ type: 'local_state', id, state: 'ACCEPTED_BY_REMOTE', response: 'echo' });
          });
          echoPeer.send({ type: 'offer', id, sdp: m.sdp });
          return;
        }
        case 'accept': {
          if (!call || !call.incoming || call.answered) return err('NO_SUCH_CALL', 'no such call', id);
          if (typeof m.sdp !== 'string') return err('BAD_REQUEST', 'sdp required', id);
          if (!echoPeer) return err('NO_SUCH_CALL', 'no echo peer', id);
          pendingAnswers.set(id, (sdp) => {
            pendingAnswers.delete(id);
            call.answered = true;
            send({ type: 'remote_state', id, state: 'ACCEPTED', sdp });
          });
          echoPeer.send({ type: 'offer', id, sdp: m.sdp });
          return;
        }
        case 'refuse':
          if (!call || !call.incoming) return err('NO_SUCH_CALL', 'no such call', id);
          calls.delete(id);
          return;
        case 'cancel':
        case 'hangup': {
          if (!call) return err('NO_SUCH_CALL', 'no such call', id);
          calls.delete(id);
          if (echoPeer) echoPeer.send({ type: 'close', id });
          if (call.answered) send({ type: 'hangup', id, reason: 'LOCAL' });
          else if (!call.incoming) send({ type: 'local_state', id, state: 'CANCELED' });
          return;
        }
        case 'dtmf': {
          if (!call) return err('NO_SUCH_CALL', 'no such call', id);
          if (typeof m.digits !== 'string' || !/^[0-9*#A-D]{1,32}$/.test(m.digits)) return err('BAD_REQUEST', 'bad digits', id);
          // The echo sends DTMF back too, one message per digit.
          for (const d of m.digits) send({ type: 'dtmf', id, digits: d });
          return;
        }
        default:
          return undefined;
      }
    }
  });

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = server.address().port;
  let n = 0;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${actual}/`,
    port: actual,
    log,
    calls,
    /** Sends `user` a remote_invitation; returns its id. */
    invite(user, { caller = '1006', content } = {}) {
      const id = `g${++n}`;
      calls.set(id, { user, answered: false, incoming: true });
      const c = users.get(user);
      if (c) c.send(Object.assign({ type: 'remote_invitation', id, caller }, content ? { content } : {}));
      return id;
    },
    /** Ends an answered call from the far side. */
    hangupRemote(id) {
      const call = calls.get(id);
      if (!call) return;
      calls.delete(id);
      if (echoPeer) echoPeer.send({ type: 'close', id });
      const c = users.get(call.user);
      if (c) c.send({ type: 'hangup', id, reason: 'REMOTE' });
    },
    /** Cuts `user`'s socket without a close frame. */
    dropUser(user) { const c = users.get(user); if (c) { users.delete(user); c.drop(); } },
    close() {
      for (const c of users.values()) c.drop();
      if (echoPeer) echoPeer.drop();
      server.closeAllConnections?.();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

// As a program: the fake gateway plus a headless Chromium holding the echo peer, until
// SIGINT/SIGTERM. For trying the demo page or run.mjs without srgate:
//   node tests/browser/fakegate.mjs [--port 8089]   → prints {"url": …}
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { launchChromium, parseArgs } = await import('./lib.mjs');
  const args = parseArgs(process.argv.slice(2), { port: 'number' });
  const gate = await startFakeGate({ port: args.port ?? 0 });
  const chrome = await launchChromium({});
  const echo = await chrome.context.newPage();
  await echo.goto(gate.url + 'echo.html');
  process.stdout.write(JSON.stringify({ url: gate.url, chromium_pid: chrome.pid }) + '\n');
  const stop = async () => { await chrome.stop(); await gate.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
