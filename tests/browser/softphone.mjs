// Drives srgate's demo page (web/index.html) like a person would: log in, dial, wait for the
// answer, listen, hang up. The received audio is measured in the page (lib.mjs measureInPage).

import { measureInPage } from './lib.mjs';

/**
 * One call through the demo page at `url`. Returns the result object that run.mjs prints:
 * { ok, dominant_hz, rms, peak_db, states, errors, hangup, setup_ms, first_audio_ms, … }.
 * Every wait is bounded.
 */
export async function runCall(page, {
  url, user, token = '', callee, seconds, expectHz, tolerance = 20, minRms = 0.001, rawAudio = true, verbose = false,
}) {
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push('page: ' + e.message));
  if (verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  const out = { ok: false, dominant_hz: null, rms: 0, states: [], errors: [] };

  await page.goto(url, { timeout: 15000 });
  await page.waitForFunction(() => !!window.srgateDemo, null, { timeout: 10000 });

  // The browser's noise suppression fades a steady test tone by ~20 dB within seconds:
  // unless asked otherwise, calls send the tone as it is.
  if (rawAudio) {
    await page.evaluate(() => {
      window.srgateDemo.audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    });
  }
  await page.fill('#user', user);
  await page.fill('#token', token);
  await page.click('#login');
  const loggedIn = await page.waitForFunction(
    () => window.srgateDemo.client.connected || window.srgateDemo.events.some((e) => e.kind === 'err'),
    null, { timeout: 12000 },
  ).then(() => page.evaluate(() => window.srgateDemo.client.connected)).catch(() => false);

  if (loggedIn) {
    await page.fill('#number', callee);
    const t0 = Date.now();
    await page.click('#call');
    const answered = await page.waitForFunction(() => {
      const c = window.srgateDemo.call;
      return c && (c.answered || c.ended);
    }, null, { timeout: 20000 }).then(() => page.evaluate(() => window.srgateDemo.call.answered)).catch(() => false);
    out.setup_ms = Date.now() - t0;

    if (answered) {
      const hasTrack = await page.waitForFunction(() => !!window.srgateDemo.call.remoteStream, null, { timeout: 5000 })
        .then(() => true).catch(() => false);
      if (hasTrack) {
        const m = await page.evaluate(measureInPage, { streamGlobal: 'srgateDemo.call.remoteStream', seconds });
        Object.assign(out, m);
      } else {
        out.errors.push('no remote audio track');
      }
      const stillUp = await page.evaluate(() => !window.srgateDemo.call.ended);
      if (stillUp) {
        await page.click('#hangup');
        await page.waitForFunction(() => window.srgateDemo.call.ended, null, { timeout: 8000 }).catch(() => {});
      }
    }
    out.hangup = await page.evaluate(() => window.srgateDemo.call && window.srgateDemo.call.endReason);
  }

  const ev = await page.evaluate(() => window.srgateDemo.events.filter((e) => ['state', 'err', 'end'].includes(e.kind)));
  for (const e of ev) {
    if (e.kind === 'state' && out.states[out.states.length - 1] !== e.state) out.states.push(e.state);
    if (e.kind === 'err') out.errors.push(e.text);
    if (e.kind === 'end' && e.reason !== 'LOCAL') {
      const err = typeof e.error === 'string' ? e.error : e.error && e.error.code;
      out.errors.push(`call ended ${e.reason}${err ? ' ' + err : ''}${e.sip ? ` (SIP ${e.sip.code} ${e.sip.reason})` : ''}`);
    }
  }
  out.errors.push(...pageErrors);
  if (!loggedIn && !out.errors.length) out.errors.push('login did not complete');

  const freqOk = expectHz === undefined || (out.dominant_hz !== null && Math.abs(out.dominant_hz - expectHz) <= tolerance);
  if (out.states.includes('ACCEPTED_BY_REMOTE')) {
    if (out.rms < minRms) out.errors.push(`received audio rms ${out.rms} < ${minRms}`);
    else if (!freqOk) out.errors.push(`dominant ${out.dominant_hz} Hz, expected ${expectHz} ± ${tolerance} Hz`);
  }
  out.ok = loggedIn && out.states.includes('ACCEPTED_BY_REMOTE') && out.rms >= minRms && freqOk
    && out.hangup === 'LOCAL' && out.errors.length === 0;
  return out;
}
