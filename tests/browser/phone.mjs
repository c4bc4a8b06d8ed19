#!/usr/bin/env node
// A scripted softphone for srgate's bridge tests: headless Chromium opens the demo page
// (web/index.html) and this process obeys one JSON command per stdin line, answering each
// with exactly one JSON line on stdout ({"ok":true,…} or {"ok":false,"error":"…"}). The Rust
// tests drive it step by step between their SIP peers (tests/common/phone.rs).
//
//   node tests/browser/phone.mjs --url http://127.0.0.1:PORT/ --tone FILE.wav [--verbose]
//
// Commands (every wait bounded by its own `timeout` in seconds, default 20):
//   {"cmd":"login","user":"1001","token":""}
//   {"cmd":"only_codecs","mime":["audio/PCMU"]}   offers of later calls carry only these
//   {"cmd":"relay_only"}                            later calls use TURN relays only
//                                                   (iceTransportPolicy "relay")
//   {"cmd":"ice_path"}                              → {"local","remote","protocol"}: the
//                                                   candidate types of the call's selected
//                                                   pair, and its transport (udp, tcp)
//   {"cmd":"call","callee":"1006"}
//   {"cmd":"wait_state","states":["ACCEPTED_BY_REMOTE"]}   → {"state":…} or the end
//   {"cmd":"wait_invite"}                               → {"peer","callerName","content","group"}
//   {"cmd":"accept"}  {"cmd":"refuse","response":"…"}  {"cmd":"hangup"}
//   {"cmd":"preview"}                                  see the caller before accepting
//   {"cmd":"dtmf","digits":"123#"}
//   {"cmd":"measure","seconds":4}                       → {"dominant_hz","rms",…}
//   {"cmd":"video","seconds":8}                          → the demo page's remote video after
//                                                   `seconds`: {"stats":{framesDecoded,
//                                                   frameWidth,frameHeight,framesPerSecond,
//                                                   mimeType,pliCount,firCount},"frame":{
//                                                   width,height,luma,saturation,colours}}
//   {"cmd":"wait_end"}                                  → {"reason","error","sip","cause"}
//   {"cmd":"wait_dtmf","count":4}                       → {"digits":"…"}
//   {"cmd":"messages"}                                  → every protocol message seen
//   {"cmd":"quit"}
// The whole run is bounded by --timeout (default 300 s).

import { createInterface } from 'node:readline';
import { launchChromium, measureInPage, parseArgs } from './lib.mjs';

let args;
try {
  args = parseArgs(process.argv.slice(2), {
    url: 'string', tone: 'string', timeout: 'number', verbose: 'bool',
  });
  for (const k of ['url', 'tone']) if (args[k] === undefined) throw new Error(`--${k} is required`);
} catch (e) {
  process.stderr.write(`${e.message}\nusage: phone.mjs --url URL --tone FILE.wav [--timeout S] [--verbose]\n`);
  process.exit(2);
}

let chrome = null;
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const quit = async (code) => {
  if (chrome) await chrome.stop();
  process.exit(code);
};
setTimeout(() => { reply({ ok: false, error: 'phone.mjs overall timeout' }); quit(1); }, (args.timeout ?? 300) * 1000);

chrome = await launchChromium({ fakeAudio: args.tone, verbose: !!args.verbose });
const page = await chrome.context.newPage();
if (args.verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
await page.goto(args.url, { timeout: 15000 });
await page.waitForFunction(() => !!window.srgateDemo, null, { timeout: 10000 });
// A steady test tone must reach srgate as it is: no noise suppression, gain control or AEC.
await page.evaluate(() => {
  window.srgateDemo.audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
});

async function waitFor(fn, arg, timeoutS) {
  return page.waitForFunction(fn, arg, { timeout: (timeoutS ?? 20) * 1000, polling: 50 })
    .then(() => true).catch(() => false);
}

const callInfo = () => page.evaluate(() => {
  const c = window.srgateDemo.call;
  if (!c) return null;
  return { id: c.id, state: c.state, ended: c.ended, endReason: c.endReason, direction: c.direction };
});

const handlers = {
  async login(c) {
    await page.fill('#user', c.user);
    await page.fill('#token', c.token ?? '');
    await page.click('#login');
    const ok = await waitFor(() => window.srgateDemo.client.connected, null, c.timeout ?? 12);
    return ok ? { ok: true } : { ok: false, error: 'login did not complete' };
  },
  async only_codecs(c) {
    await page.evaluate((mimes) => {
      const wanted = new Set(mimes.map((m) => m.toLowerCase()));
      const orig = RTCPeerConnection.prototype.createOffer;
      RTCPeerConnection.prototype.createOffer = function (...a) {
        const caps = RTCRtpSender.getCapabilities('audio').codecs
          .filter((k) => wanted.has(k.mimeType.toLowerCase()));
        for (const t of this.getTransceivers()) t.setCodecPreferences(caps);
        return orig.apply(this, a);
      };
    }, c.mime);
    return { ok: true };
  },
  async relay_only() {
    await page.evaluate(() => {
      const Orig = window.RTCPeerConnection;
      window.RTCPeerConnection = function (config, ...rest) {
        return new Orig({ ...(config || {}), iceTransportPolicy: 'relay' }, ...rest);
      };
      window.RTCPeerConnection.prototype = Orig.prototype;
      if (window.srgateDemo.client) window.srgateDemo.client._RTCPeerConnection = window.RTCPeerConnection;
    });
    return { ok: true };
  },
  async ice_path(c) {
    // the selected pair shows in getStats a moment after the connection is up: polled in
    // the page, bounded
    return page.evaluate(async (timeoutMs) => {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const pc = window.srgateDemo.call && window.srgateDemo.call.pc;
        if (pc) {
          const stats = await pc.getStats();
          let pair = null;
          stats.forEach((s) => {
            if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
          });
          if (pair) {
            const local = stats.get(pair.localCandidateId);
            const remote = stats.get(pair.remoteCandidateId);
            return {
              ok: true,
              local: local && local.candidateType,
              remote: remote && remote.candidateType,
              protocol: local && local.protocol,
            };
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return { ok: false, error: 'no selected candidate pair' };
    }, (c.timeout ?? 5) * 1000);
  },
  async call(c) {
    await page.fill('#number', c.callee);
    await page.click('#call');
    return { ok: true };
  },
  async wait_state(c) {
    const ok = await waitFor((states) => {
      const cl = window.srgateDemo.call;
      return cl && (cl.ended || states.includes(cl.state));
    }, c.states, c.timeout);
    const info = await callInfo();
    if (!ok || !info) return { ok: false, error: 'timeout waiting for ' + c.states.join('|'), call: info };
    return { ok: !info.ended && c.states.includes(info.state), state: info.state, call: info };
  },
  async wait_invite(c) {
    const ok = await waitFor(() => {
      const cl = window.srgateDemo.call;
      return cl && cl.direction === 'incoming' && !cl.ended && cl.state === 'INVITED';
    }, null, c.timeout);
    if (!ok) return { ok: false, error: 'no invitation', call: await callInfo() };
    return page.evaluate(() => {
      const cl = window.srgateDemo.call;
      return { ok: true, id: cl.id, peer: cl.peer, callerName: cl.callerName ?? null, content: cl.content ?? null, group: cl.group ?? null, video: cl.video === true };
    });
  },
  async accept() {
    await page.click('#accept');
    return { ok: true };
  },
  async preview() {
    await page.evaluate(() => window.srgateDemo.call.preview({ audio: window.srgateDemo.audio }));
    return { ok: true };
  },
  async video(c) {
    await new Promise((r) => setTimeout(r, (c.seconds ?? 5) * 1000));
    return page.evaluate(async () => {
      const cl = window.srgateDemo.call;
      if (!cl || !cl.pc) return { ok: false, error: 'no call' };
      const report = await cl.pc.getStats();
      let stats = null;
      const codecs = {};
      report.forEach((r) => { if (r.type === 'codec') codecs[r.id] = r.mimeType; });
      report.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          stats = {
            framesDecoded: r.framesDecoded ?? 0, frameWidth: r.frameWidth ?? 0,
            frameHeight: r.frameHeight ?? 0, framesPerSecond: r.framesPerSecond ?? 0,
            mimeType: codecs[r.codecId] ?? null, pliCount: r.pliCount ?? 0, firCount: r.firCount ?? 0,
          };
        }
      });
      // one frame of the page's video element: mean luma, mean saturation and how many
      // coarse colours it holds (a test card has many; a black or grey frame has one)
      const v = document.getElementById('remote-video');
      let frame = null;
      if (v && v.videoWidth > 0) {
        const canvas = document.createElement('canvas');
        canvas.width = v.videoWidth;
        canvas.height = v.videoHeight;
        const g = canvas.getContext('2d');
        g.drawImage(v, 0, 0);
        const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
        let luma = 0, sat = 0;
        const colours = new Set();
        const n = px.length / 4;
        for (let i = 0; i < px.length; i += 4) {
          const [r, gr, b] = [px[i], px[i + 1], px[i + 2]];
          luma += 0.299 * r + 0.587 * gr + 0.114 * b;
          sat += Math.max(r, gr, b) - Math.min(r, gr, b);
          colours.add(((r >> 6) << 4) | ((gr >> 6) << 2) | (b >> 6));
        }
        frame = { width: canvas.width, height: canvas.height, luma: luma / n, saturation: sat / n, colours: colours.size };
      }
      return { ok: stats !== null, stats, frame, hidden: v ? v.hidden : null };
    });
  },
  async refuse(c) {
    await page.evaluate((response) => window.srgateDemo.call.refuse(response ? { response } : {}), c.response ?? null);
    return { ok: true };
  },
  async hangup() {
    await page.evaluate(() => window.srgateDemo.call && window.srgateDemo.call.hangup());
    return { ok: true };
  },
  async dtmf(c) {
    await page.evaluate((d) => window.srgateDemo.call.dtmf(d), c.digits);
    return { ok: true };
  },
  async measure(c) {
    const has = await waitFor(() => !!(window.srgateDemo.call && window.srgateDemo.call.remoteStream), null, 5);
    if (!has) return { ok: false, error: 'no remote audio track' };
    const m = await page.evaluate(measureInPage, { streamGlobal: 'srgateDemo.call.remoteStream', seconds: c.seconds ?? 4 });
    return { ok: true, ...m };
  },
  async wait_end(c) {
    const ok = await waitFor(() => window.srgateDemo.call && window.srgateDemo.call.ended, null, c.timeout);
    if (!ok) return { ok: false, error: 'call did not end', call: await callInfo() };
    return page.evaluate(() => {
      const ends = window.srgateDemo.events.filter((e) => e.kind === 'end');
      const e = ends[ends.length - 1] || {};
      return { ok: true, reason: e.reason ?? null, error: e.error ?? null, sip: e.sip ?? null, cause: e.cause ?? null };
    });
  },
  async wait_dtmf(c) {
    const count = c.count ?? 1;
    const digits = () => window.srgateDemo.events
      .filter((e) => e.kind === 'message' && e.msg.type === 'dtmf').map((e) => e.msg.digits).join('');
    await waitFor((n) => window.srgateDemo.events
      .filter((e) => e.kind === 'message' && e.msg.type === 'dtmf').length >= n, count, c.timeout);
    const got = await page.evaluate(digits);
    return { ok: got.length >= count, digits: got };
  },
  async messages() {
    const msgs = await page.evaluate(() => window.srgateDemo.events.filter((e) => e.kind === 'message').map((e) => e.msg));
    return { ok: true, messages: msgs, page_errors: pageErrors };
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
