// web/srgate.js under Node, with a scripted WebSocket and a stand-in RTCPeerConnection: the
// protocol state machine (requests sent, events fired, calls ended) including the paths a
// browser run cannot reach quickly: re-login after the grace, owed hangups, AUTH_FAILED on
// re-login, giving up. Run: node --test tests/browser/client.test.mjs

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SrgateClient, SrgateError } from '../../web/srgate.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A WebSocket whose far end is the test: `sent` holds parsed frames, `reply()` answers. */
class FakeSocket {
  static all = [];
  static refuse = false; // new sockets fail to connect
  static autoLogin = 'ok'; // 'ok' | 'AUTH_FAILED' | null (no answer)

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
    setTimeout(() => {
      if (FakeSocket.refuse) {
        this.readyState = 3;
        this.onclose({ code: 1006, reason: '' });
      } else {
        this.readyState = 1;
        this.onopen();
      }
    }, 1);
  }

  send(text) {
    const m = JSON.parse(text);
    this.sent.push(m);
    if (m.type === 'login' && FakeSocket.autoLogin === 'ok') setTimeout(() => this.reply({ type: 'login_ok', user: m.user }), 1);
    if (m.type === 'login' && FakeSocket.autoLogin === 'AUTH_FAILED') {
      setTimeout(() => this.reply({ type: 'error', code: 'AUTH_FAILED', message: 'bad token' }), 1);
    }
    if (m.type === 'ping') setTimeout(() => this.reply({ type: 'pong' }), 1);
  }

  reply(obj) { if (this.readyState === 1) this.onmessage({ data: JSON.stringify(obj) }); }

  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose({ code, reason: '' }), 1);
  }

  /** The network drops the connection. */
  drop() { this.readyState = 3; this.onclose({ code: 1006, reason: '' }); }

  of(type) { return this.sent.filter((m) => m.type === type); }
}

class FakePc extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.signalingState = 'stable';
    this.connectionState = 'new';
    this.localDescription = null;
    this.remote = null;
  }
  addTransceiver(kind, init) { this.transceiver = { kind, init }; }
  async createOffer() { return { type: 'offer', sdp: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n' }; }
  async setLocalDescription(d) { this.localDescription = d; this.signalingState = 'have-local-offer'; }
  async setRemoteDescription(d) {
    if (d.sdp === 'broken') throw new Error('bad answer');
    this.remote = d;
    this.signalingState = 'stable';
  }
  close() { this.signalingState = 'closed'; }
}

const track = { kind: 'audio', stopped: false, stop() { this.stopped = true; } };
const stream = { getAudioTracks: () => [track], getTracks: () => [track] };

function client(opts = {}) {
  FakeSocket.all = [];
  FakeSocket.refuse = false;
  FakeSocket.autoLogin = 'ok';
  return new SrgateClient(Object.assign({ url: 'ws://gw/ws', WebSocket: FakeSocket, RTCPeerConnection: FakePc }, opts));
}

function events(target, types) {
  const seen = [];
  for (const t of types) target.addEventListener(t, (e) => seen.push([t, e.detail]));
  return seen;
}

const until = async (cond, what, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timeout: ' + what);
    await sleep(2);
  }
};

async function answeredCall(c, ws) {
  const call = c.call('echo', { stream, content: 'hi', channelId: 'ch1' });
  await call.ready;
  const inv = ws.of('invite')[0];
  ws.reply({ type: 'local_state', id: inv.id, state: 'SENT_TO_REMOTE', sdp: 'answer-sdp' });
  ws.reply({ type: 'local_state', id: inv.id, state: 'ACCEPTED_BY_REMOTE' });
  await until(() => call.answered, 'answered');
  return call;
}

test('login, then an outgoing call: invite at once with the offer, answer applied, hangup confirmed', async () => {
  const c = client();
  const sends = events(c, ['send']);
  const ok = await c.login('1001', 'secret-token');
  assert.equal(ok.user, '1001');
  assert.equal(c.connected, true);
  assert.equal(sends[0][1].token, '***', 'the token never reaches the send event');
  const ws = FakeSocket.all[0];
  assert.equal(ws.of('login')[0].token, 'secret-token');

  const call = c.call('echo', { stream, content: 'hi', channelId: 'ch1' });
  const seen = events(call, ['localstate', 'end']);
  await call.ready;
  const inv = ws.of('invite')[0];
  assert.deepEqual([inv.callee, inv.content, inv.channelId, inv.id], ['echo', 'hi', 'ch1', call.id]);
  assert.match(inv.sdp, /^v=0/);
  assert.equal(call.state, 'INVITING');
  ws.reply({ type: 'local_state', id: call.id, state: 'SENT_TO_REMOTE', sdp: 'answer-sdp' });
  ws.reply({ type: 'local_state', id: call.id, state: 'RECEIVED_BY_REMOTE' });
  ws.reply({ type: 'local_state', id: call.id, state: 'ACCEPTED_BY_REMOTE', response: 'yes' });
  await until(() => call.answered, 'answered');
  assert.deepEqual(call.pc.remote, { type: 'answer', sdp: 'answer-sdp' });
  assert.deepEqual(seen.map(([, d]) => d.state), ['SENT_TO_REMOTE', 'RECEIVED_BY_REMOTE', 'ACCEPTED_BY_REMOTE']);

  call.dtmf('12#');
  assert.deepEqual(ws.of('dtmf')[0], { type: 'dtmf', id: call.id, digits: '12#' });
  assert.throws(() => call.dtmf('1x'), (e) => e instanceof SrgateError && e.code === 'INVALID_ARGUMENT');

  call.hangup();
  assert.equal(ws.of('hangup').length, 1);
  assert.equal(call.ended, false, 'waits for srgate');
  ws.reply({ type: 'hangup', id: call.id, reason: 'LOCAL' });
  await until(() => call.ended, 'ended');
  assert.equal(call.endReason, 'LOCAL');
  assert.equal(call.pc.signalingState, 'closed');
  assert.equal(track.stopped, false, 'a stream given by the app is not stopped');
  assert.equal(c.calls.length, 0);
  assert.equal(seen.at(-1)[0], 'end');
});

test('an error answering the invite ends the call with its code; errors reach the client too', async () => {
  const c = client();
  await c.login('1001', 't');
  const ws = FakeSocket.all[0];
  const errs = events(c, ['error']);
  const call = c.call('9999', { stream });
  await call.ready;
  ws.reply({ type: 'error', code: 'BAD_REQUEST', message: 'content too long', id: call.id });
  await until(() => call.ended, 'ended');
  assert.equal(call.endReason, 'FAILURE');
  assert.equal(errs[0][1].code, 'BAD_REQUEST');
  assert.equal(errs[0][1].id, call.id);
});

test('a broken answer SDP: error event, cancel sent, call ends', async () => {
  const c = client();
  await c.login('1001', 't');
  const ws = FakeSocket.all[0];
  const call = c.call('echo', { stream });
  const errs = events(call, ['error']);
  await call.ready;
  ws.reply({ type: 'local_state', id: call.id, state: 'SENT_TO_REMOTE', sdp: 'broken' });
  await until(() => ws.of('cancel').length === 1, 'cancel');
  assert.equal(errs.length, 1);
  ws.reply({ type: 'local_state', id: call.id, state: 'CANCELED' });
  await until(() => call.ended, 'ended');
  assert.equal(call.endReason, 'CANCELED');
});

test('incoming call: accept carries an offer, remote_state ACCEPTED carries the answer', async () => {
  const c = client();
  await c.login('2002', 't');
  const ws = FakeSocket.all[0];
  const inv = events(c, ['remoteinvitation']);
  ws.reply({ type: 'remote_invitation', id: 'g7', caller: '1006', callerName: 'Door', content: 'x' });
  assert.equal(inv.length, 1);
  const call = inv[0][1].call;
  assert.deepEqual([call.direction, call.peer, call.callerName, call.state], ['incoming', '1006', 'Door', 'INVITED']);
  await call.accept({ stream, response: 'ok' });
  const acc = ws.of('accept')[0];
  assert.deepEqual([acc.id, acc.response], ['g7', 'ok']);
  assert.match(acc.sdp, /^v=0/);
  ws.reply({ type: 'remote_state', id: 'g7', state: 'ACCEPTED', sdp: 'ans' });
  await until(() => call.answered, 'answered');
  assert.deepEqual(call.pc.remote, { type: 'answer', sdp: 'ans' });
  ws.reply({ type: 'dtmf', id: 'g7', digits: '5' });
  ws.reply({ type: 'hangup', id: 'g7', reason: 'REMOTE', sip: { code: 200, reason: 'OK' } });
  await until(() => call.ended, 'ended');
  assert.equal(call.endReason, 'REMOTE');

  ws.reply({ type: 'remote_invitation', id: 'g8', caller: '1007' });
  const second = c.calls[0];
  second.refuse({ response: 'busy' });
  assert.deepEqual(ws.of('refuse')[0], { type: 'refuse', id: 'g8', response: 'busy' });
  assert.equal(second.endReason, 'REFUSED');
});

test('socket dropped mid-call: re-login with the same token, call kept, hangup owed while down is sent after', async () => {
  const c = client();
  await c.login('3003', 'tok');
  const ws = FakeSocket.all[0];
  const call = await answeredCall(c, ws);
  const ev = events(c, ['disconnected', 'reconnected']);
  FakeSocket.refuse = true;
  ws.drop();
  assert.equal(ev[0][0], 'disconnected');
  assert.equal(c.connected, false);
  call.hangup(); // while down: remembered; the call ends here at once
  assert.equal(call.endReason, 'LOCAL');
  await sleep(400); // some refused attempts
  FakeSocket.refuse = false;
  await until(() => ev.some(([t]) => t === 'reconnected'), 'reconnected', 4000);
  const ws2 = FakeSocket.all.at(-1);
  assert.equal(ws2.of('login')[0].token, 'tok');
  assert.deepEqual(ws2.of('hangup'), [{ type: 'hangup', id: call.id }], 'the owed hangup goes out after the re-login');
});

test('socket dropped: the call survives a quick re-login', async () => {
  const c = client();
  await c.login('3004', 'tok');
  const call = await answeredCall(c, FakeSocket.all[0]);
  FakeSocket.all[0].drop();
  await until(() => c.connected, 'reconnected');
  assert.equal(call.ended, false);
  assert.equal(c.calls.length, 1);
  const ws2 = FakeSocket.all.at(-1);
  ws2.reply({ type: 'hangup', id: call.id, reason: 'REMOTE' });
  await until(() => call.ended, 'ended on the new socket');
});

test('socket down longer than the grace: calls end DISCONNECTED, re-login still happens', async () => {
  const c = client({ reconnectGraceMs: 150, refreshToken: async (u) => `fresh-${u}` });
  await c.login('3005', 'tok');
  const call = await answeredCall(c, FakeSocket.all[0]);
  FakeSocket.refuse = true;
  FakeSocket.all[0].drop();
  await until(() => call.ended, 'ended by the grace', 1000);
  assert.equal(call.endReason, 'DISCONNECTED');
  FakeSocket.refuse = false;
  await until(() => c.connected, 'reconnected', 4000);
  assert.equal(FakeSocket.all.at(-1).of('login')[0].token, 'fresh-3005', 'refreshToken is used for re-login');
});

test('re-login refused (expired token): close, calls ended, no more attempts', async () => {
  const c = client();
  await c.login('3006', 'tok');
  const call = await answeredCall(c, FakeSocket.all[0]);
  const ev = events(c, ['close']);
  FakeSocket.autoLogin = 'AUTH_FAILED';
  FakeSocket.all[0].drop();
  await until(() => ev.length === 1, 'close', 3000);
  assert.equal(call.endReason, 'DISCONNECTED');
  const n = FakeSocket.all.length;
  await sleep(700);
  assert.equal(FakeSocket.all.length, n, 'no further attempts');
  assert.equal(c.user, null);
});

test('reconnecting gives up after reconnectForMs', async () => {
  const c = client({ reconnectForMs: 300 });
  await c.login('3007', 'tok');
  const ev = events(c, ['close']);
  FakeSocket.refuse = true;
  FakeSocket.all[0].drop();
  await until(() => ev.length === 1, 'gave up', 4000);
  assert.equal(ev[0][1].reason, 'gave up reconnecting');
});

test('KICKED: calls let go, close, no reconnect', async () => {
  const c = client();
  await c.login('4004', 'tok');
  const ws = FakeSocket.all[0];
  const call = await answeredCall(c, ws);
  const ev = events(c, ['close', 'error']);
  ws.reply({ type: 'error', code: 'KICKED', message: 'logged in elsewhere' });
  ws.drop();
  assert.equal(call.endReason, 'KICKED');
  assert.deepEqual(ev.map(([t]) => t), ['error', 'close']);
  await sleep(400);
  assert.equal(FakeSocket.all.length, 1, 'no reconnect after KICKED');
});

test('login errors and ping', async () => {
  const c = client();
  FakeSocket.autoLogin = 'AUTH_FAILED';
  await assert.rejects(c.login('1001', 'bad'), (e) => e instanceof SrgateError && e.code === 'AUTH_FAILED');
  assert.throws(() => c.call('echo'), (e) => e.code === 'NOT_CONNECTED');
  FakeSocket.autoLogin = 'ok';
  await c.login('1001', 'good');
  assert.equal(typeof (await c.ping()), 'number');
  FakeSocket.refuse = true;
  const c2 = new SrgateClient({ url: 'ws://gw/ws', WebSocket: FakeSocket, RTCPeerConnection: FakePc });
  await assert.rejects(c2.login('1001', 'x'), (e) => e.code === 'SOCKET_CLOSED');
});

test('cancel before the invite leaves sends nothing; cancel after sends cancel', async () => {
  const c = client();
  await c.login('1001', 't');
  const ws = FakeSocket.all[0];
  const early = c.call('echo', { stream });
  early.cancel();
  await early.ready.catch(() => {});
  await sleep(20);
  assert.equal(ws.of('invite').length, 0);
  assert.equal(early.endReason, 'CANCELED');
  const late = c.call('echo', { stream });
  await late.ready;
  late.hangup(); // not answered yet: a cancel
  assert.equal(ws.of('cancel')[0].id, late.id);
  ws.reply({ type: 'local_state', id: late.id, state: 'CANCELED' });
  await until(() => late.ended, 'ended');
  assert.equal(late.endReason, 'CANCELED');
});

test('close(): ends calls with the right request each, then close', async () => {
  const c = client();
  await c.login('1001', 't');
  const ws = FakeSocket.all[0];
  const out = await answeredCall(c, ws);
  ws.reply({ type: 'remote_invitation', id: 'g1', caller: '7' });
  const ev = events(c, ['close']);
  c.close();
  assert.deepEqual(ws.sent.slice(-2).map((m) => [m.type, m.id]), [['hangup', out.id], ['refuse', 'g1']]);
  assert.equal(ev.length, 1);
  assert.equal(c.calls.length, 0);
  await sleep(20);
  assert.equal(ev.length, 1, 'close fires once');
});
