// The common pieces of srgate's browser harness (see docs/architecture.md for what it tests): starting and stopping headless Chromium,
// argument parsing, and the in-page audio measurement (WebAudio).
//
// Chromium is started by us (child_process.spawn with the flags in launchChromium below and
// a fresh --user-data-dir) and driven over CDP by playwright-core, so we own its PID: it is stopped
// by that PID (its own process group) whatever happens, and its profile is deleted.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.SRGATE_CHROMIUM || '/usr/bin/chromium';

/** Parses `--name value` and `--flag` arguments. `spec` maps names to 'string' | 'number' | 'bool'. */
export function parseArgs(argv, spec) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const name = a.slice(2);
    const kind = spec[name];
    if (!kind) throw new Error(`unknown option --${name}`);
    if (kind === 'bool') {
      out[name] = true;
      continue;
    }
    if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`);
    const v = argv[++i];
    if (kind === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error(`--${name}: not a number: ${v}`);
      out[name] = n;
    } else {
      out[name] = v;
    }
  }
  return out;
}

/** Rejects after `ms` with `what` in the message, unless `promise` settles first. */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Starts headless Chromium with `fakeAudio` as the microphone and connects playwright-core
 * to it. `fakeDevice: false` leaves Chromium without any microphone; `micPrompt: 'deny'`
 * answers the permission prompt with a refusal (default: allow). Returns { browser, context, pid, startMs, stop }. `stop()` is idempotent and never
 * throws: it closes the CDP connection, kills Chromium's process group and deletes the
 * profile.
 */
export async function launchChromium({
  fakeAudio, insecureCerts = false, verbose = false, extraArgs = [], fakeDevice = true, micPrompt = 'allow',
}) {
  const profile = mkdtempSync(join(tmpdir(), 'srgate-chromium-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    micPrompt === 'deny' ? '--use-fake-ui-for-media-stream=deny' : '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    `--user-data-dir=${profile}`,
    '--remote-debugging-address=127.0.0.1',
    '--remote-debugging-port=0',
  ];
  if (fakeDevice) args.push('--use-fake-device-for-media-stream');
  if (fakeDevice && fakeAudio) args.push(`--use-file-for-fake-audio-capture=${fakeAudio}`);
  if (insecureCerts) args.push('--ignore-certificate-errors');
  args.push(...extraArgs, 'about:blank');

  const started = Date.now();
  // A process group of its own, so that stop() reaches the zygote and renderers too.
  const child = spawn(CHROMIUM, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let exited = false;
  const exitPromise = new Promise((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  let browser = null;
  let stopping = null;
  // Every caller waits for the same, complete stop (a second caller must not exit early).
  const stop = () => (stopping ??= doStop());
  const doStop = async () => {
    if (browser) await withTimeout(browser.close(), 3000, 'CDP close').catch(() => {});
    if (!exited) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
      await withTimeout(exitPromise, 3000, 'Chromium exit').catch(() => {
        try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
      });
    }
    // Helpers of the group may outlive the main process by a moment.
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* none left */ }
    rmSync(profile, { recursive: true, force: true });
  };

  try {
    const endpoint = await withTimeout(new Promise((resolve, reject) => {
      let err = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk) => {
        if (verbose) process.stderr.write(chunk);
        err += chunk;
        const m = err.match(/DevTools listening on (ws:\/\/\S+)/);
        if (m) resolve(m[1]);
        if (err.length > 1 << 20) err = err.slice(-4096);
      });
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(
        `Chromium exited early (code ${code}, signal ${signal}): ${err.slice(-2000)}`)));
    }), 30000, 'Chromium start');
    // Keep draining stderr so Chromium never blocks on a full pipe.
    child.stderr.on('data', () => {});
    browser = await withTimeout(chromium.connectOverCDP(endpoint), 15000, 'CDP connect');
    const context = browser.contexts()[0];
    return { browser, context, pid: child.pid, startMs: Date.now() - started, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Runs IN THE PAGE (passed to page.evaluate): records `stream` (a remote MediaStream, or the
 * name of a global holding one) for `seconds` with a WebAudio AnalyserNode and returns
 * { dominant_hz, rms, peak_db, frames, sample_rate, first_audio_ms }.
 *
 * Chromium only feeds a remote WebRTC track into WebAudio while a media element holds the
 * stream, hence the muted Audio element. The spectrum is averaged in linear power over all
 * frames; the peak (above 50 Hz) is refined by parabolic interpolation on the dB values.
 * `rms` is over all time-domain frames (full scale = 1.0).
 */
export async function measureInPage({ streamGlobal, seconds }) {
  const stream = streamGlobal.split('.').reduce((o, k) => (o == null ? o : o[k]), window);
  if (!stream) throw new Error(`no stream at ${streamGlobal}`);
  const el = new Audio();
  el.muted = true;
  el.srcObject = stream;
  await el.play().catch(() => {});
  const ctx = new AudioContext();
  await ctx.resume().catch(() => {});
  const src = ctx.createMediaStreamSource(stream);
  const an = ctx.createAnalyser();
  an.fftSize = 8192;
  an.smoothingTimeConstant = 0;
  const sink = ctx.createGain();
  sink.gain.value = 0;
  src.connect(an);
  an.connect(sink);
  sink.connect(ctx.destination);

  const bins = an.frequencyBinCount;
  const spec = new Float32Array(bins);
  const power = new Float64Array(bins);
  const time = new Float32Array(an.fftSize);
  let frames = 0;
  let sumSq = 0;
  let samples = 0;
  let firstAudio = null;
  const start = performance.now();
  const end = start + seconds * 1000;
  // Bounded: one frame per 100 ms for `seconds`.
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    an.getFloatFrequencyData(spec);
    an.getFloatTimeDomainData(time);
    let frameSq = 0;
    for (let i = 0; i < time.length; i++) frameSq += time[i] * time[i];
    sumSq += frameSq;
    samples += time.length;
    if (firstAudio === null && Math.sqrt(frameSq / time.length) > 0.003) {
      firstAudio = Math.round(performance.now() - start);
    }
    for (let i = 0; i < bins; i++) {
      if (Number.isFinite(spec[i])) power[i] += Math.pow(10, spec[i] / 10);
    }
    frames++;
  }
  const binHz = ctx.sampleRate / an.fftSize;
  let best = -1;
  for (let i = Math.ceil(50 / binHz); i < bins - 1; i++) {
    if (best < 0 || power[i] > power[best]) best = i;
  }
  let hz = null;
  let peakDb = null;
  if (best > 0 && power[best] > 0) {
    const db = (i) => 10 * Math.log10(Math.max(power[i] / frames, 1e-30));
    const a = db(best - 1), b = db(best), c = db(best + 1);
    const denom = a - 2 * b + c;
    const offset = denom !== 0 ? 0.5 * (a - c) / denom : 0;
    hz = (best + Math.max(-0.5, Math.min(0.5, offset))) * binHz;
    peakDb = b;
  }
  const sampleRate = ctx.sampleRate;
  await ctx.close().catch(() => {});
  el.srcObject = null;
  return {
    dominant_hz: hz === null ? null : Math.round(hz * 10) / 10,
    rms: samples ? Math.round(Math.sqrt(sumSq / samples) * 1e5) / 1e5 : 0,
    peak_db: peakDb === null ? null : Math.round(peakDb * 10) / 10,
    frames,
    sample_rate: sampleRate,
    first_audio_ms: firstAudio,
  };
}
