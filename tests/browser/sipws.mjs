#!/usr/bin/env node
// A scripted SIP-over-WebSocket softphone for srgate's tests: headless Chromium runs a real
// SIP stack from npm (JsSIP or SIP.js, bundled for the page with esbuild) against srgate's
// web listener, and this process obeys one JSON command per stdin line, answering each with
// exactly one JSON line on stdout ({"ok":true,…} or {"ok":false,"error":"…"}). Driven by
// tests/common/phone.rs like phone.mjs.
//
//   node tests/browser/sipws.mjs --lib jssip|sipjs --url http://127.0.0.1:PORT/ \
//        --domain 127.0.0.1 --tone FILE.wav [--timeout S] [--verbose]
//
// Commands (every wait bounded by its own `timeout` in seconds, default 20):
//   {"cmd":"register","user":"1003","password":"pw"}   → once registered (or the failure)
//   {"cmd":"call","callee":"1006"}
//   {"cmd":"wait_established"}                        → the call is answered (both ways)
//   {"cmd":"wait_invite"}                             → {"from"}: an incoming call rings
//   {"cmd":"accept"}  {"cmd":"reject"}  {"cmd":"hangup"}
//   {"cmd":"measure","seconds":3}                     → {"dominant_hz","rms",…}
//   {"cmd":"dtmf","digits":"12#"}                     DTMF as SIP INFO (with "rfc4733":true:
//                                                     in the media, RFC 4733; JsSIP only)
//   {"cmd":"wait_dtmf","count":2}                     → {"digits"} received as SIP INFO
//   {"cmd":"hold"} {"cmd":"unhold"}                   → {"remote_direction"}: the direction
//                                                     of srgate's answer to the re-INVITE
//   {"cmd":"wait_end"}                                → {"cause","originator"}
//   {"cmd":"unregister"}  {"cmd":"quit"}

import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { launchChromium, measureInPage, parseArgs } from './lib.mjs';

let args;
try {
  args = parseArgs(process.argv.slice(2), {
    lib: 'string', url: 'string', domain: 'string', tone: 'string', timeout: 'number', verbose: 'bool',
  });
  for (const k of ['lib', 'url', 'domain', 'tone']) if (args[k] === undefined) throw new Error(`--${k} is required`);
  if (!['jssip', 'sipjs'].includes(args.lib)) throw new Error('--lib is jssip or sipjs');
} catch (e) {
  process.stderr.write(`${e.message}\nusage: sipws.mjs --lib jssip|sipjs --url URL --domain D --tone FILE.wav\n`);
  process.exit(2);
}

// The library, bundled for the page (one global: JsSIP or SIP).
const require = createRequire(import.meta.url);
const esbuild = require('esbuild');
const entry = args.lib === 'jssip' ? require.resolve('jssip/lib/JsSIP.js') : require.resolve('sip.js');
const bundle = esbuild.buildSync({
  entryPoints: [entry], bundle: true, format: 'iife', platform: 'browser', write: false,
  globalName: args.lib === 'jssip' ? 'JsSIP' : 'SIP', logLevel: 'silent',
}).outputFiles[0].text;

let chrome = null;
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const quit = async (code) => {
  if (chrome) await chrome.stop();
  process.exit(code);
};
setTimeout(() => { reply({ ok: false, error: 'sipws.mjs overall timeout' }); quit(1); }, (args.timeout ?? 300) * 1000);

chrome = await launchChromium({ fakeAudio: args.tone, verbose: !!args.verbose });
const page = await chrome.context.newPage();
if (args.verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
// srgate's own page: the WebSocket's Origin is the listener's, as for the demo
await page.goto(args.url, { timeout: 15000 });
await page.addScriptTag({ content: bundle });

// The softphone, in the page: one object over both libraries.
await page.evaluate(({ lib, verbose, wsUrl, domain }) => {
  const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const st = {
    lib, registered: false, regError: null, session: null, incoming: null, established: false,
    ended: null, remoteStream: null, dtmf: '', log: [],
  };
  window.sp = st;
  if (verbose && lib === 'jssip') JsSIP.debug.enable('JsSIP:*');
  const trackOf = (pc) => {
    if (!pc) return;
    const grab = () => {
      const tracks = pc.getReceivers().map((r) => r.track).filter((t) => t && t.kind === 'audio');
      if (tracks.length) st.remoteStream = new MediaStream(tracks);
    };
    pc.addEventListener('track', grab);
    grab();
  };
  const remoteDirection = (pc) => {
    const sdp = pc && pc.currentRemoteDescription && pc.currentRemoteDescription.sdp;
    const m = sdp && sdp.match(/a=(sendrecv|sendonly|recvonly|inactive)/);
    return m ? m[1] : null;
  };

  if (lib === 'jssip') {
    let ua = null;
    const watch = (s) => {
      st.session = s;
      st.established = false;
      st.ended = null;
      const pcNow = () => s.connection;
      if (s.connection) trackOf(s.connection);
      s.on('peerconnection', (e) => trackOf(e.peerconnection));
      s.on('confirmed', () => { st.established = true; trackOf(pcNow()); });
      s.on('accepted', () => trackOf(pcNow()));
      s.on('ended', (e) => { st.ended = { cause: e.cause, originator: e.originator }; });
      s.on('failed', (e) => { st.ended = { cause: e.cause, originator: e.originator }; });
      s.on('newDTMF', (e) => { if (e.originator === 'remote') st.dtmf += e.dtmf.tone; });
    };
    st.register = (user, password) => {
      const socket = new JsSIP.WebSocketInterface(wsUrl);
      ua = new JsSIP.UA({
        sockets: [socket], uri: `sip:${user}@${domain}`, password, register: true, session_timers: false,
      });
      ua.on('registered', () => { st.registered = true; });
      ua.on('registrationFailed', (e) => { st.regError = String(e.cause); });
      ua.on('unregistered', () => { st.registered = false; });
      ua.on('newRTCSession', (e) => {
        if (e.originator === 'remote') st.incoming = e.session;
        watch(e.session);
      });
      ua.start();
    };
    st.unregister = () => ua.unregister({ all: false });
    st.call = (callee) => {
      ua.call(`sip:${callee}@${domain}`, { mediaConstraints: { audio, video: false }, pcConfig: { iceServers: [] } });
    };
    st.accept = () => st.incoming.answer({ mediaConstraints: { audio, video: false }, pcConfig: { iceServers: [] } });
    st.reject = () => st.incoming.terminate({ status_code: 486 });
    st.hangup = () => st.session.terminate();
    st.dtmfSend = (digits, rfc4733) => st.session.sendDTMF(digits, {
      transportType: rfc4733 ? 'RFC2833' : 'INFO', interToneGap: 100,
    });
    st.hold = (on) => new Promise((resolve, reject) => {
      const done = { succeeded: () => resolve(remoteDirection(st.session.connection)), failed: () => reject(new Error('re-INVITE failed')) };
      const ok = on ? st.session.hold({}, () => setTimeout(done.succeeded, 200))
        : st.session.unhold({}, () => setTimeout(done.succeeded, 200));
      if (!ok) reject(new Error('hold/unhold not possible now'));
    });
  } else {
    let ua = null;
    let registerer = null;
    const watch = (s) => {
      st.session = s;
      st.established = false;
      st.ended = null;
      st.remoteBye = false;
      st.localHangup = false;
      s.delegate = {
        onInfo(info) {
          const body = info.request.body || '';
          const m = body.match(/Signal\s*=\s*(\S)/i);
          if (m) st.dtmf += m[1];
          info.accept();
        },
        onBye(bye) {
          st.remoteBye = true;
          bye.accept();
        },
      };
      s.stateChange.addListener((state) => {
        if (state === 'Established') {
          st.established = true;
          trackOf(s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection);
        }
        if (state === 'Terminated' && !st.ended) {
          const originator = st.remoteBye ? 'remote' : (st.localHangup ? 'local' : null);
          st.ended = { cause: 'Terminated', originator };
        }
      });
    };
    const options = { sessionDescriptionHandlerOptions: { constraints: { audio, video: false } } };
    st.register = (user, password) => {
      ua = new SIP.UserAgent({
        uri: SIP.UserAgent.makeURI(`sip:${user}@${domain}`),
        transportOptions: { server: wsUrl },
        authorizationUsername: user,
        authorizationPassword: password,
        sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: [] } },
        delegate: { onInvite(inv) { st.incoming = inv; watch(inv); } },
      });
      ua.start().then(() => {
        registerer = new SIP.Registerer(ua);
        registerer.stateChange.addListener((s) => { st.registered = s === 'Registered'; });
        return registerer.register({
          requestDelegate: { onReject: (r) => { st.regError = `${r.message.statusCode}`; } },
        });
      }).catch((e) => { st.regError = String(e); });
    };
    st.unregister = () => registerer.unregister();
    st.call = (callee) => {
      const inviter = new SIP.Inviter(ua, SIP.UserAgent.makeURI(`sip:${callee}@${domain}`), options);
      watch(inviter);
      inviter.invite().catch((e) => { st.ended = { cause: String(e), originator: 'local' }; });
    };
    st.accept = () => st.incoming.accept(options);
    st.reject = () => st.incoming.reject();
    st.hangup = () => {
      const s = st.session;
      st.localHangup = true;
      if (s.state === 'Established') return s.bye();
      if (s instanceof SIP.Inviter) return s.cancel();
      return s.reject();
    };
    st.dtmfSend = async (digits) => {
      for (const d of digits) {
        await st.session.info({ requestOptions: { body: { contentDisposition: 'render', contentType: 'application/dtmf-relay', content: `Signal=${d}\r\nDuration=100` } } });
      }
    };
    st.hold = (on) => new Promise((resolve, reject) => {
      const s = st.session;
      s.sessionDescriptionHandlerOptionsReInvite = { hold: on, constraints: { audio, video: false } };
      s.invite({
        requestDelegate: {
          onAccept: () => setTimeout(() => resolve(remoteDirection(s.sessionDescriptionHandler.peerConnection)), 200),
          onReject: (r) => reject(new Error(`re-INVITE refused ${r.message.statusCode}`)),
        },
      }).catch(reject);
    });
  }
}, { lib: args.lib, verbose: !!args.verbose, wsUrl: args.url.replace(/^http/, 'ws').replace(/\/?$/, '/ws'), domain: args.domain });

async function waitFor(fn, arg, timeoutS) {
  return page.waitForFunction(fn, arg, { timeout: (timeoutS ?? 20) * 1000, polling: 50 })
    .then(() => true).catch(() => false);
}
const ended = () => page.evaluate(() => window.sp.ended);

const handlers = {
  async register(c) {
    await page.evaluate(({ user, password }) => window.sp.register(user, password), c);
    await waitFor(() => window.sp.registered || window.sp.regError, null, c.timeout ?? 10);
    const r = await page.evaluate(() => ({ registered: window.sp.registered, error: window.sp.regError }));
    return r.registered ? { ok: true } : { ok: false, error: `not registered: ${r.error}` };
  },
  async unregister(c) {
    await page.evaluate(() => window.sp.unregister());
    const ok = await waitFor(() => !window.sp.registered, null, c.timeout ?? 10);
    return { ok };
  },
  async call(c) {
    await page.evaluate((callee) => window.sp.call(callee), c.callee);
    return { ok: true };
  },
  async wait_established(c) {
    const ok = await waitFor(() => window.sp.established || window.sp.ended, null, c.timeout);
    const up = await page.evaluate(() => window.sp.established && !window.sp.ended);
    return ok && up ? { ok: true } : { ok: false, error: 'not established', ended: await ended() };
  },
  async wait_invite(c) {
    const ok = await waitFor(() => !!window.sp.incoming && !window.sp.ended, null, c.timeout);
    if (!ok) return { ok: false, error: 'no incoming call' };
    return page.evaluate(() => {
      const s = window.sp.incoming;
      const from = window.sp.lib === 'jssip' ? s.remote_identity.uri.user : s.remoteIdentity.uri.user;
      return { ok: true, from };
    });
  },
  async accept() {
    await page.evaluate(() => window.sp.accept());
    return { ok: true };
  },
  async reject() {
    await page.evaluate(() => window.sp.reject());
    return { ok: true };
  },
  async hangup() {
    await page.evaluate(() => window.sp.hangup());
    return { ok: true };
  },
  async dtmf(c) {
    await page.evaluate(({ digits, rfc4733 }) => window.sp.dtmfSend(digits, rfc4733), { digits: c.digits, rfc4733: !!c.rfc4733 });
    return { ok: true };
  },
  async wait_dtmf(c) {
    const n = c.count ?? 1;
    await waitFor((k) => window.sp.dtmf.length >= k, n, c.timeout);
    const digits = await page.evaluate(() => window.sp.dtmf);
    return { ok: digits.length >= n, digits };
  },
  async hold() {
    const remote_direction = await page.evaluate(() => window.sp.hold(true));
    return { ok: true, remote_direction };
  },
  async unhold() {
    const remote_direction = await page.evaluate(() => window.sp.hold(false));
    return { ok: true, remote_direction };
  },
  async measure(c) {
    const has = await waitFor(() => !!window.sp.remoteStream, null, 5);
    if (!has) return { ok: false, error: 'no remote audio track' };
    const m = await page.evaluate(measureInPage, { streamGlobal: 'sp.remoteStream', seconds: c.seconds ?? 3 });
    return { ok: true, ...m };
  },
  async wait_end(c) {
    const ok = await waitFor(() => !!window.sp.ended, null, c.timeout);
    if (!ok) return { ok: false, error: 'call did not end' };
    return { ok: true, ...(await ended()), page_errors: pageErrors };
  },
  async quit() {
    reply({ ok: true });
    await quit(0);
  },
};

reply({ ok: true, ready: true, chromium_start_ms: chrome.startMs });
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let c;
  try { c = JSON.parse(line); } catch (e) { reply({ ok: false, error: 'bad JSON: ' + e.message }); continue; }
  const h = handlers[c.cmd];
  if (!h) { reply({ ok: false, error: 'unknown command ' + c.cmd }); continue; }
  try { reply(await h(c)); } catch (e) { reply({ ok: false, error: String(e && e.message || e) }); }
}
await quit(0);
