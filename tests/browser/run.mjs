#!/usr/bin/env node
// srgate's browser harness: headless Chromium opens the demo page, logs in, calls, measures
// the received audio in the page, hangs up, and prints ONE JSON line on stdout:
//   {"ok":true,"dominant_hz":440.2,"rms":0.071,"states":[…],"errors":[],…}
// Exit status 0 when ok, 1 otherwise (2: bad arguments). Bounded by --timeout.
//
//   node tests/browser/run.mjs --url http://127.0.0.1:PORT/ --user 1001 --callee echo \
//        --tone FILE.wav --seconds 6 [--expect-hz 440] [--tolerance 20] [--token T] \
//        [--min-rms 0.001] [--insecure-certs] [--browser-processing] [--timeout SECONDS] [--verbose]
//
// --browser-processing keeps Chromium's echo cancellation / noise suppression / gain control
// on the microphone (off by default: noise suppression fades a steady tone by ~20 dB).

import { launchChromium, parseArgs } from './lib.mjs';
import { runCall } from './softphone.mjs';

const USAGE = 'usage: run.mjs --url URL --user USER --callee CALLEE --tone FILE.wav [--seconds N] [--expect-hz HZ] ' +
  '[--tolerance HZ] [--token T] [--min-rms R] [--insecure-certs] [--browser-processing] [--timeout S] [--verbose]';

let args;
try {
  args = parseArgs(process.argv.slice(2), {
    url: 'string', user: 'string', callee: 'string', tone: 'string', token: 'string',
    seconds: 'number', 'expect-hz': 'number', tolerance: 'number', 'min-rms': 'number',
    'insecure-certs': 'bool', 'browser-processing': 'bool', timeout: 'number', verbose: 'bool',
  });
  for (const k of ['url', 'user', 'callee', 'tone']) if (args[k] === undefined) throw new Error(`--${k} is required`);
} catch (e) {
  process.stderr.write(`${e.message}\n${USAGE}\n`);
  process.exit(2);
}

const seconds = args.seconds ?? 6;
const started = Date.now();
let chrome = null;
let printed = false;

function finish(result) {
  if (printed) return;
  printed = true;
  result.elapsed_ms = Date.now() - started;
  process.stdout.write(JSON.stringify(result) + '\n');
}

// The whole run is bounded: on overrun, report, stop Chromium, exit 1.
const deadline = setTimeout(async () => {
  finish({ ok: false, dominant_hz: null, rms: 0, states: [], errors: [`timeout after ${args.timeout ?? seconds + 60} s`] });
  if (chrome) await chrome.stop();
  process.exit(1);
}, (args.timeout ?? seconds + 60) * 1000);

let result;
try {
  chrome = await launchChromium({ fakeAudio: args.tone, insecureCerts: !!args['insecure-certs'], verbose: !!args.verbose });
  const page = await chrome.context.newPage();
  result = await runCall(page, {
    url: args.url, user: args.user, token: args.token ?? '', callee: args.callee, seconds,
    expectHz: args['expect-hz'], tolerance: args.tolerance ?? 20, minRms: args['min-rms'] ?? 0.001,
    rawAudio: !args['browser-processing'], verbose: !!args.verbose,
  });
  result.chromium_start_ms = chrome.startMs;
} catch (e) {
  result = { ok: false, dominant_hz: null, rms: 0, states: [], errors: [String(e && e.message || e).split('\n')[0]] };
} finally {
  if (chrome) await chrome.stop();
}
clearTimeout(deadline);
finish(result);
process.exit(result.ok ? 0 : 1);
