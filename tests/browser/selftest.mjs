#!/usr/bin/env node
// Proves the browser harness WITHOUT srgate:
//  1. the in-page frequency measurement: one page, two RTCPeerConnections connected to each
//     other over loopback, Chromium's fake microphone playing a sox tone on one side, the
//     measurement on the other: 440 Hz and 1000 Hz within ±20 Hz (and the tone measured
//     straight from the microphone track, as a control);
//  2. web/index.html + web/srgate.js + softphone.mjs (run.mjs's call flow) against a fake
//     gateway (fakegate.mjs) whose `echo` is a second tab sending the audio back;
//  3. srgate.js's protocol paths: AUTH_FAILED, a failed call, cancel before the invite,
//     an incoming call accepted (offer in accept, answer in remote_state), DTMF, a remote
//     hangup, a dropped socket taken over by the automatic re-login, KICKED.
// Prints one JSON line per check and a summary; exit 0 when all pass.
//
//   node tests/browser/selftest.mjs [--verbose]
//   unshare -n sh -c 'ip link set lo up; node tests/browser/selftest.mjs'

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeGate } from './fakegate.mjs';
import { launchChromium, measureInPage, parseArgs, withTimeout } from './lib.mjs';
import { runCall } from './softphone.mjs';

const args = parseArgs(process.argv.slice(2), { verbose: 'bool' });
const TOL = 20;
const results = [];
function check(name, pass, detail = {}) {
  const r = Object.assign({ check: name, pass: !!pass }, detail);
  results.push(r);
  process.stdout.write(JSON.stringify(r) + '\n');
}

// Runs in the page: microphone → RTCPeerConnection a → loopback → b; b's stream in window.loopRemote.
async function loopback() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  window.localMic = stream;
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  window.loopPcs = [a, b];
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const got = new Promise((r) => { b.ontrack = (e) => r(e.streams[0] || new MediaStream([e.track])); });
  a.addTrack(stream.getAudioTracks()[0], stream);
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  window.loopRemote = await got;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('ICE did not connect: ' + b.iceConnectionState)), 10000);
    const chk = () => {
      if (b.iceConnectionState === 'connected' || b.iceConnectionState === 'completed') { clearTimeout(t); resolve(); }
    };
    b.oniceconnectionstatechange = chk;
    chk();
  });
  const pair = [...(await b.getStats()).values()].find((s) => s.type === 'candidate-pair' && s.nominated);
  return pair ? pair.state : 'no nominated pair';
}

// Runs in the page: protocol scenarios with srgate.js directly. `step` picks one.
async function scenario({ step, user, arg }) {
  const { SrgateClient, SrgateError } = await import('/srgate.js');
  const wait = (p, ms, what) => Promise.race([p, new Promise((_, j) => setTimeout(() => j(new Error('timeout: ' + what)), ms))]);
  const once = (target, type, ms = 8000) => wait(new Promise((r) => target.addEventListener(type, (e) => r(e.detail), { once: true })), ms, type);
  const client = new SrgateClient();
  window.client = client;
  if (step === 'auth') {
    try { await client.login(user, 'bad'); return { got: 'login_ok' }; } catch (e) { return { got: e.code, isSrgateError: e instanceof SrgateError }; }
  }
  await client.login(user, 'x');
  if (step === 'offline') {
    const c = client.call('nobody');
    const end = await once(c, 'end');
    return { reason: end.reason, error: end.error };
  }
  if (step === 'cancel-early') {
    const c = client.call('echo');
    c.cancel();
    await new Promise((r) => setTimeout(r, 1500));
    return { id: c.id, ended: c.ended, reason: c.endReason };
  }
  if (step === 'bad-dtmf') {
    const c = client.call('echo');
    await once(c, 'localstate');
    let code = null;
    try { c.dtmf('12x'); } catch (e) { code = e.code; }
    c.hangup();
    const end = await once(c, 'end');
    return { code, reason: end.reason };
  }
  if (step === 'incoming') {
    const inv = await once(client, 'remoteinvitation', 10000);
    const c = inv.call;
    const track = once(c, 'track');
    await c.accept({ response: 'hello' });
    const rs = await once(c, 'remotestate');
    await track;
    window.incomingCall = c;
    return { caller: inv.caller, content: inv.content, state: rs.state, answered: c.answered };
  }
  if (step === 'reconnect') {
    const c = client.call('echo');
    window.reconnectCall = c;
    await wait(new Promise((r) => { const f = () => c.answered && r(); c.addEventListener('localstate', f); }), 10000, 'answer');
    if (!c.remoteStream) await once(c, 'track');
    return { id: c.id, answered: c.answered };
  }
  if (step === 'kick') {
    window.kickSeen = once(client, 'error', 15000).then((d) => d.code);
    window.closeSeen = once(client, 'close', 15000).then(() => true);
    return { user: client.user };
  }
  throw new Error('unknown step ' + step + arg);
}

const work = mkdtempSync(join(tmpdir(), 'srgate-selftest-'));
const gate = await startFakeGate();
const deadline = setTimeout(() => { check('overall time limit (240 s)', false); process.exit(1); }, 240000);
const starts = [];
try {
  // 0 Hz: a silent file, the control that a missing signal is seen as one.
  for (const hz of [440, 1000, 0]) {
    const wav = join(work, `tone${hz}.wav`);
    if (hz) execFileSync('sox', ['-n', '-r', '48000', '-c', '1', wav, 'synth', '8', 'sine', String(hz), 'gain', '-6']);
    else execFileSync('sox', ['-n', '-r', '48000', '-c', '1', wav, 'trim', '0', '8']);
    const chrome = await launchChromium({ fakeAudio: wav, insecureCerts: hz === 440, verbose: !!args.verbose });
    starts.push(chrome.startMs);
    try {
      const page = await chrome.context.newPage();
      page.on('pageerror', (e) => check(`page error (${hz} Hz)`, false, { error: e.message }));
      await page.goto(gate.url + 'blank.html');
      const pair = await withTimeout(page.evaluate(loopback), 20000, 'loopback setup');
      if (hz === 0) {
        const m = await page.evaluate(measureInPage, { streamGlobal: 'loopRemote', seconds: 2 });
        check('loopback of a silent file: rms below the 0.001 threshold', m.rms < 0.001, Object.assign({ pair }, m));
        continue;
      }
      const direct = await page.evaluate(measureInPage, { streamGlobal: 'localMic', seconds: 2 });
      check(`direct microphone ${hz} Hz`, Math.abs(direct.dominant_hz - hz) <= TOL && direct.rms > 0.01, direct);
      const m = await page.evaluate(measureInPage, { streamGlobal: 'loopRemote', seconds: 4 });
      check(`loopback RTCPeerConnection ${hz} Hz`, m.dominant_hz !== null && Math.abs(m.dominant_hz - hz) <= TOL && m.rms > 0.001,
        Object.assign({ pair }, m));

      if (hz === 440) {
        // 2. The demo page and run.mjs's flow against the fake gateway's echo.
        const echo = await chrome.context.newPage();
        await echo.goto(gate.url + 'echo.html');
        await echo.waitForFunction(() => true);
        await new Promise((r) => setTimeout(r, 300)); // the echo peer says hello
        const phone = await chrome.context.newPage();
        const r = await runCall(phone, { url: gate.url, user: '1001', callee: 'echo', seconds: 4, expectHz: 440, verbose: !!args.verbose });
        check('demo page call to echo (run.mjs flow) 440 Hz', r.ok, r);

        // The same over HTTPS + WSS with a self-signed certificate (run.mjs --insecure-certs).
        let tlsGate = null;
        try {
          const key = join(work, 'key.pem');
          const cert = join(work, 'cert.pem');
          execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
          { stdio: 'ignore' });
          tlsGate = await startFakeGate({ tls: { key: readFileSync(key), cert: readFileSync(cert) } });
          const tlsEcho = await chrome.context.newPage();
          await tlsEcho.goto(tlsGate.url + 'echo.html');
          await new Promise((res) => setTimeout(res, 300));
          const tlsPhone = await chrome.context.newPage();
          const t = await runCall(tlsPhone, { url: tlsGate.url, user: '1001', callee: 'echo', seconds: 3, expectHz: 440 });
          const wsUrl = await tlsPhone.evaluate(() => window.srgateDemo.client.url);
          check('demo page over HTTPS + WSS (self-signed, --insecure-certs) 440 Hz', t.ok && wsUrl.startsWith('wss://'), Object.assign({ wsUrl }, t));
          await tlsEcho.close();
          await tlsPhone.close();
        } finally {
          if (tlsGate) await tlsGate.close();
        }

        // 3. Protocol paths of srgate.js.
        const p = await chrome.context.newPage();
        await p.goto(gate.url + 'blank.html');
        const auth = await p.evaluate(scenario, { step: 'auth', user: '1001' });
        check('login with a refused token → AUTH_FAILED', auth.got === 'AUTH_FAILED' && auth.isSrgateError, auth);
        await p.reload();
        const off = await p.evaluate(scenario, { step: 'offline', user: '1002' });
        check('call to an offline callee ends FAILURE PEER_OFFLINE', off.reason === 'FAILURE' && off.error === 'PEER_OFFLINE', off);
        await p.reload();
        const early = await p.evaluate(scenario, { step: 'cancel-early', user: '1003' });
        const leaked = gate.log.some((l) => l.msg.id === early.id);
        check('cancel before the invite leaves: nothing sent, ends CANCELED', early.ended && early.reason === 'CANCELED' && !leaked, early);
        await p.reload();
        const bad = await p.evaluate(scenario, { step: 'bad-dtmf', user: '1004' });
        check('bad DTMF digits → INVALID_ARGUMENT; hangup ends the call', bad.code === 'INVALID_ARGUMENT' && ['LOCAL', 'CANCELED'].includes(bad.reason), bad);

        // Incoming call: accept with an offer, answer in remote_state, audio, DTMF, remote hangup.
        await p.reload();
        const incoming = p.evaluate(scenario, { step: 'incoming', user: '2002' });
        await new Promise((r) => setTimeout(r, 800));
        const gid = gate.invite('2002', { caller: '1006', content: 'door 3' });
        const inc = await incoming;
        check('incoming call accepted: offer in accept, remote_state ACCEPTED', inc.state === 'ACCEPTED' && inc.answered && inc.caller === '1006' && inc.content === 'door 3', inc);
        const im = await p.evaluate(measureInPage, { streamGlobal: 'incomingCall.remoteStream', seconds: 3 });
        check('incoming call audio 440 Hz', im.dominant_hz !== null && Math.abs(im.dominant_hz - 440) <= TOL, im);
        const digits = await p.evaluate(async () => {
          const got = [];
          window.incomingCall.addEventListener('dtmf', (e) => got.push(e.detail.digits));
          window.incomingCall.dtmf('12#');
          await new Promise((r) => setTimeout(r, 1000));
          return got.join('');
        });
        check('DTMF sent and one dtmf event per digit back', digits === '12#', { digits });
        await p.evaluate(() => { window.remoteEnd = new Promise((r) => window.incomingCall.addEventListener('end', (e) => r(e.detail.reason))); });
        gate.hangupRemote(gid);
        const reason = await withTimeout(p.evaluate(() => window.remoteEnd), 5000, 'remote hangup');
        const pcState = await p.evaluate(() => window.incomingCall.pc.signalingState);
        check('remote hangup ends the call and closes the RTCPeerConnection', reason === 'REMOTE' && pcState === 'closed', { reason, pcState });

        // A dropped socket: srgate.js logs in again and the call goes on.
        await p.reload();
        const rc = await p.evaluate(scenario, { step: 'reconnect', user: '3003' });
        await p.evaluate(() => { window.back = new Promise((r) => window.client.addEventListener('reconnected', (e) => r(e.detail))); });
        gate.dropUser('3003');
        const rec = await withTimeout(p.evaluate(() => window.back), 8000, 'reconnect');
        const after = await p.evaluate(async () => {
          const c = window.reconnectCall;
          const m = await (async () => {
            const end = new Promise((r) => c.addEventListener('end', (e) => r(e.detail.reason)));
            c.hangup();
            return end;
          })();
          return { reason: m, media: c.pc.connectionState };
        });
        check('socket dropped mid-call: re-login within the grace, call survives, hangup answered LOCAL',
          rc.answered && rec.lostForMs < 10000 && after.reason === 'LOCAL', Object.assign({ lostForMs: rec.lostForMs }, after));

        // KICKED: a second login of the same user elsewhere.
        await p.reload();
        await p.evaluate(scenario, { step: 'kick', user: '4004' });
        const p2 = await chrome.context.newPage();
        await p2.goto(gate.url + 'blank.html');
        await p2.evaluate(scenario, { step: 'kick', user: '4004' });
        const kicked = await p.evaluate(async () => ({ code: await window.kickSeen, closed: await window.closeSeen, user: window.client.user }));
        check('second login elsewhere → KICKED, close, no reconnect', kicked.code === 'KICKED' && kicked.closed && kicked.user === null, kicked);
      }
    } finally {
      await chrome.stop();
    }
  }

  // 4. Microphone failures explained in plain words on the demo page.
  const micCase = async (name, launch, pageUrl, expect) => {
    const chrome = await launchChromium(launch);
    starts.push(chrome.startMs);
    try {
      const page = await chrome.context.newPage();
      const invites = gate.log.filter((l) => l.msg.type === 'invite').length;
      await page.goto(pageUrl);
      await page.fill('#token', 'x');
      await page.click('#login');
      await page.waitForFunction(() => window.srgateDemo.client.connected, null, { timeout: 8000 });
      await page.fill('#number', 'echo');
      await page.click('#call');
      await page.waitForFunction(() => !document.getElementById('mic-error').hidden, null, { timeout: 8000 });
      const shown = await page.evaluate(() => ({
        text: document.getElementById('mic-error').textContent,
        ended: window.srgateDemo.call.endReason,
        banner: document.getElementById('insecure').hidden ? null : document.getElementById('insecure').textContent,
      }));
      const invited = gate.log.filter((l) => l.msg.type === 'invite').length !== invites;
      check(name, expect.test(shown.text) && shown.ended === 'SETUP_FAILED' && !invited, Object.assign({ invited }, shown));
    } finally {
      await chrome.stop();
    }
  };
  await micCase('no microphone → NotFoundError explained', { fakeDevice: false }, gate.url, /No microphone was found/);
  await micCase('microphone refused → NotAllowedError explained', { micPrompt: 'deny' }, gate.url, /Microphone access was denied/);
  await micCase('insecure context (http://srgate.test) → https/localhost explained',
    { extraArgs: [`--host-resolver-rules=MAP srgate.test 127.0.0.1`] },
    gate.url.replace('127.0.0.1', 'srgate.test'), /secure pages: open this page over https/);
} catch (e) {
  check('selftest ran to the end', false, { error: String(e && e.stack || e) });
} finally {
  clearTimeout(deadline);
  await gate.close();
  rmSync(work, { recursive: true, force: true });
}
const failed = results.filter((r) => !r.pass).length;
process.stdout.write(JSON.stringify({ summary: failed ? 'FAIL' : 'PASS', checks: results.length, failed, chromium_start_ms: starts }) + '\n');
process.exit(failed ? 1 : 0);
