/**
 * srgate.js: the browser client of srgate's call-invitation protocol (JSON text frames over a
 * WebSocket at `/ws`) and of its WebRTC media. No dependencies, no build step: an ES module.
 *
 * ```js
 * import { SrgateClient } from '/srgate.js';
 * const client = new SrgateClient();              // ws(s)://<this host>/ws
 * await client.login('1001', token);
 * const call = client.call('echo');               // microphone → srgate → back
 * call.addEventListener('track', () => { audio.srcObject = call.remoteStream; });
 * call.addEventListener('end', (e) => console.log('ended', e.detail.reason));
 * client.addEventListener('remoteinvitation', (e) => e.detail.call.accept());
 * ```
 *
 * Rules of the protocol that shape this client: the browser always makes the SDP offer and
 * srgate always answers (an outgoing call gets the answer in `local_state SENT_TO_REMOTE`, an
 * accepted incoming one in `remote_state ACCEPTED`); there are no candidate messages, so the
 * offer is sent at once, without waiting for ICE gathering; a socket that drops does not end
 * the calls: logging in again within 10 s takes them over, which this client does by itself.
 *
 * Errors: every failure is an {@link SrgateError} with a `code`: srgate's own codes
 * (BAD_JSON, BAD_REQUEST, TOO_LARGE, UNKNOWN_TYPE, NOT_LOGGEDIN, AUTH_FAILED, KICKED,
 * NO_SUCH_CALL) and this client's (NOT_CONNECTED, SOCKET_CLOSED, TIMEOUT, INVALID_ARGUMENT,
 * INVALID_STATE, INSECURE_CONTEXT, MEDIA_FAILED). Microphone errors keep the browser's
 * DOMException (`NotAllowedError`, `NotFoundError`, …) as `cause`.
 *
 * @module srgate
 */

/** How long srgate keeps the calls of a user whose socket closed (docs/protocol.md). */
export const RECONNECT_GRACE_MS = 10000;

const DTMF_DIGITS = /^[0-9*#A-D]{1,32}$/;
const REQUEST_TIMEOUT_MS = 10000;
/** After a cancel/refuse/hangup, how long to wait for srgate's closing event. */
const END_WAIT_MS = 5000;
const BACKOFF_MS = [250, 500, 1000, 2000];

/** An error of the protocol or of this client; `code` says which. */
export class SrgateError extends Error {
  /**
   * @param {string} code srgate's error code or one of this client's.
   * @param {string} [message] human-readable text.
   * @param {{id?: string, cause?: unknown}} [extra] the call id it concerns; the underlying error.
   */
  constructor(code, message, extra = {}) {
    super(message || code, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'SrgateError';
    /** @type {string} */
    this.code = code;
    /** @type {string|undefined} */
    this.id = extra.id;
  }
}

/**
 * The WebSocket address of srgate on the host that served this page:
 * `wss://host/ws` on https pages, `ws://host/ws` otherwise.
 * @returns {string}
 */
export function defaultUrl() {
  const secure = globalThis.location && globalThis.location.protocol === 'https:';
  const host = globalThis.location ? globalThis.location.host : '127.0.0.1';
  return `${secure ? 'wss' : 'ws'}://${host}/ws`;
}

function randomId() {
  const b = new Uint8Array(9);
  globalThis.crypto.getRandomValues(b);
  return 'c' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function fire(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

/**
 * One call, outgoing (from {@link SrgateClient#call}) or incoming (from a `remoteinvitation`).
 *
 * Events (CustomEvent, data in `detail`): `localstate` / `remotestate` (the protocol message),
 * `hangup` (the message), `dtmf` (the message, one digit), `error` ({@link SrgateError} in
 * `detail.error`), `track` (`detail.stream`: the remote audio), `connectionstate`
 * (`detail.state`: RTCPeerConnection.connectionState), and `end` once, when the call is over
 * (`detail.reason`: REFUSED_BY_REMOTE, CANCELED, FAILURE, REFUSED, LOCAL, REMOTE, TIMEOUT,
 * ERROR, KICKED, DISCONNECTED, CLOSED or SETUP_FAILED; `detail.error` / `detail.sip` when
 * known; `detail.cause` ANSWERED_ELSEWHERE when another member of the ring group called
 * took the call).
 */
export class Call extends EventTarget {
  /** @param {SrgateClient} client @param {object} init @internal */
  constructor(client, init) {
    super();
    this._client = client;
    /** The call id (chosen by this client for outgoing calls, by srgate for incoming ones). */
    this.id = init.id;
    /** 'outgoing' | 'incoming' */
    this.direction = init.direction;
    /** The other party: the callee of an outgoing call, the caller of an incoming one. */
    this.peer = init.peer;
    /** The caller's display name (incoming calls), if srgate knows it. */
    this.callerName = init.callerName;
    /** The invitation's `content` (the caller's for incoming calls). */
    this.content = init.content;
    /** The invitation's `channelId`. */
    this.channelId = init.channelId;
    /** The caller sends video srgate passes on (a door camera): `accept()` receives it. */
    this.video = init.video === true;
    /** The ring group the caller dialled (incoming calls to a `[groups]` number). */
    this.group = init.group;
    /**
     * The latest state: NEW, INVITING (invite sent), then srgate's local_state states
     * (SENT_TO_REMOTE, RECEIVED_BY_REMOTE, ACCEPTED_BY_REMOTE) for outgoing calls; INVITED,
     * ACCEPTING, ACCEPTED for incoming ones; ENDED at the end.
     */
    this.state = init.direction === 'outgoing' ? 'NEW' : 'INVITED';
    /** True once the call is answered (both ways). */
    this.answered = false;
    /** True once the call is over; `endReason` says why. */
    this.ended = false;
    /** @type {string|null} */
    this.endReason = null;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {MediaStream|null} the audio sent to srgate. */
    this.localStream = null;
    /** @type {MediaStream|null} the audio received from srgate. */
    this.remoteStream = null;
    this._ownStream = false;
    this._queue = Promise.resolve();
    this._endTimer = null;
    this._wantEnd = false;
  }

  /**
   * Ends the call whatever its state: cancels an outgoing call not yet answered, refuses an
   * incoming one not yet accepted, hangs up an answered one. The `end` event follows (at the
   * latest after a few seconds if srgate does not confirm).
   */
  hangup() {
    if (this.ended) return;
    if (this.direction === 'outgoing' && !this.answered) return this.cancel();
    if (this.direction === 'incoming' && this.state === 'INVITED') return this.refuse();
    this._requestEnd('hangup', 'LOCAL');
  }

  /**
   * Gives up an outgoing call before it is answered (`cancel`); srgate confirms with
   * `local_state CANCELED`. Before the invite has left, the call just ends.
   */
  cancel() {
    if (this.ended) return;
    if (this.direction !== 'outgoing') throw new SrgateError('INVALID_STATE', 'only an outgoing call can be canceled', { id: this.id });
    if (this.state === 'NEW') {
      this._wantEnd = true; // the setup in flight stops before sending anything
      this._end('CANCELED');
      return;
    }
    this._requestEnd(this.answered ? 'hangup' : 'cancel', 'CANCELED');
  }

  /**
   * Accepts an incoming call: takes the microphone (or `stream`), makes the SDP offer and sends
   * `accept`; srgate answers with `remote_state ACCEPTED`.
   * @param {{response?: string, stream?: MediaStream, audio?: MediaTrackConstraints|boolean, video?: boolean}} [opts]
   *   `response`: text for the caller; `stream`: audio to send instead of the microphone;
   *   `audio`: getUserMedia audio constraints; `video`: receive the caller's video when it
   *   sends one (`call.video`; default true, false declines it: audio only). Its track comes
   *   in a `track` event like the audio one (`e.detail.track.kind === 'video'`).
   * @returns {Promise<void>} resolves when `accept` is sent; rejects with an SrgateError
   *   (microphone failures: code MEDIA_FAILED or INSECURE_CONTEXT, the DOMException as `cause`).
   */
  async accept(opts = {}) {
    if (this.direction === 'incoming' && this.state === 'PREVIEWING' && !this.ended) {
      // the preview is on its way: accepted as soon as srgate answered it
      this._acceptAfterPreview = opts;
      return;
    }
    if (this.direction === 'incoming' && this.state === 'PREVIEW' && !this.ended && this.pc) {
      // previewed: srgate answered our offer already; accepting sends the 200, and our
      // microphone (muted while previewing) is heard from now on
      for (const t of (this.localStream ? this.localStream.getAudioTracks() : [])) t.enabled = true;
      this.state = 'ACCEPTING';
      const msg = { type: 'accept', id: this.id, sdp: this.pc.localDescription.sdp };
      if (opts.response !== undefined) msg.response = opts.response;
      this._sendOrFail(msg);
      return;
    }
    if (this.direction !== 'incoming' || this.state !== 'INVITED' || this.ended) {
      throw new SrgateError('INVALID_STATE', `cannot accept a call in state ${this.state}`, { id: this.id });
    }
    this.state = 'ACCEPTING';
    const receiveVideo = this.video && opts.video !== false;
    const sdp = await this._prepareOffer(Object.assign({}, opts, { receiveVideo }));
    if (sdp === null) return;
    const msg = { type: 'accept', id: this.id, sdp };
    if (opts.response !== undefined) msg.response = opts.response;
    this._sendOrFail(msg);
  }

  /**
   * Sees (and hears) the caller before answering — a door's camera while it rings: takes the
   * microphone as `accept` does, makes the offer and sends `preview`; srgate answers with
   * `remote_state PREVIEW` and the caller's early media flows (a `track` event each). Nothing
   * of ours reaches the caller until `accept()`, which then sends the answer at once;
   * `refuse()` or `hangup()` decline as before. Not for a ring group's call (`call.group`).
   * @param {{stream?: MediaStream, audio?: MediaTrackConstraints|boolean, video?: boolean}} [opts]
   * @returns {Promise<void>} resolves when `preview` is sent.
   */
  async preview(opts = {}) {
    if (this.direction !== 'incoming' || this.state !== 'INVITED' || this.ended) {
      throw new SrgateError('INVALID_STATE', `cannot preview a call in state ${this.state}`, { id: this.id });
    }
    this.state = 'PREVIEWING';
    const receiveVideo = this.video && opts.video !== false;
    const sdp = await this._prepareOffer(Object.assign({}, opts, { receiveVideo }));
    if (sdp === null) return;
    // nothing of ours is heard before the answer (srgate forwards none either)
    for (const t of (this.localStream ? this.localStream.getAudioTracks() : [])) t.enabled = false;
    this._sendOrFail({ type: 'preview', id: this.id, sdp });
  }

  /**
   * Refuses an incoming call (`refuse`). The call ends at once.
   * @param {{response?: string}} [opts] `response`: text for the caller.
   */
  refuse(opts = {}) {
    if (this.ended) return;
    if (this.direction !== 'incoming') throw new SrgateError('INVALID_STATE', 'only an incoming call can be refused', { id: this.id });
    if (this.state !== 'INVITED' && this.state !== 'PREVIEW' && this.state !== 'PREVIEWING') return this.hangup();
    const msg = { type: 'refuse', id: this.id };
    if (opts.response !== undefined) msg.response = opts.response;
    this._client._sendOrRemember(msg);
    this._end('REFUSED');
  }

  /**
   * Sends DTMF digits through srgate (which sends them to the SIP side as RFC 4733 events).
   * @param {string} digits 1–32 of 0-9 * # A-D.
   */
  dtmf(digits) {
    if (typeof digits !== 'string' || !DTMF_DIGITS.test(digits)) {
      throw new SrgateError('INVALID_ARGUMENT', 'DTMF digits are 1-32 of 0-9 * # A-D', { id: this.id });
    }
    if (this.ended) throw new SrgateError('INVALID_STATE', 'the call has ended', { id: this.id });
    this._client._send({ type: 'dtmf', id: this.id, digits });
  }

  /** Starts an outgoing call: offer, then `invite`. @internal */
  async _start(opts) {
    const sdp = await this._prepareOffer(opts);
    if (sdp === null) return;
    const msg = { type: 'invite', id: this.id, callee: this.peer, sdp };
    if (opts.content !== undefined) msg.content = opts.content;
    if (opts.channelId !== undefined) msg.channelId = opts.channelId;
    this._sendOrFail(msg);
    this.state = 'INVITING';
  }

  _sendOrFail(msg) {
    try {
      this._client._send(msg);
    } catch (error) {
      this._fail(error);
      throw error;
    }
  }

  /** Microphone, RTCPeerConnection, offer. Returns the offer SDP, or null if the call ended meanwhile. */
  async _prepareOffer(opts) {
    // Never fire events inside call(): its caller attaches listeners after it returns.
    await Promise.resolve();
    try {
      let stream = opts.stream || null;
      if (!stream) {
        const md = globalThis.navigator && globalThis.navigator.mediaDevices;
        if (!md || !md.getUserMedia) {
          throw new SrgateError('INSECURE_CONTEXT',
            'no microphone access here: getUserMedia needs a secure context (https:// or http://localhost)', { id: this.id });
        }
        try {
          stream = await md.getUserMedia({ audio: opts.audio === undefined ? true : opts.audio, video: false });
        } catch (cause) {
          throw new SrgateError('MEDIA_FAILED', `microphone: ${cause && cause.name}: ${cause && cause.message}`, { id: this.id, cause });
        }
        this._ownStream = true;
      }
      this.localStream = stream;
      if (this.ended || this._wantEnd) {
        this._release();
        return null;
      }
      const Pc = this._client._RTCPeerConnection;
      const pc = new Pc({ iceServers: this._client.iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      this.pc = pc;
      const track = stream.getAudioTracks()[0];
      if (track) pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
      else pc.addTransceiver('audio', { direction: 'sendrecv' });
      // the caller's camera, received only (srgate passes it on, it sends none back)
      if (opts.receiveVideo) pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addEventListener('track', (e) => {
        this.remoteStream = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
        fire(this, 'track', { call: this, stream: this.remoteStream, track: e.track });
      });
      pc.addEventListener('connectionstatechange', () => {
        fire(this, 'connectionstate', { call: this, state: pc.connectionState });
        // Media that cannot recover: end the call rather than leave silence.
        if (pc.connectionState === 'failed' && !this.ended) this.hangup();
      });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (this.ended || this._wantEnd) {
        this._release();
        return null;
      }
      // Sent at once: srgate is ICE-lite and learns our address from the checks.
      return pc.localDescription.sdp;
    } catch (e) {
      const error = e instanceof SrgateError ? e : new SrgateError('MEDIA_FAILED', String(e && e.message || e), { id: this.id, cause: e });
      this._fail(error);
      throw error;
    }
  }

  /** A failure on our side before the call got going: tell the user, end the call. */
  _fail(error) {
    if (this.ended) return;
    if (this.state === 'PREVIEWING') {
      // only the preview failed (no microphone, say): still invited, accept as usual
      this._release();
      this.pc = null;
      this.state = 'INVITED';
      this._acceptAfterPreview = null;
      fire(this, 'error', { call: this, error });
      return;
    }
    fire(this, 'error', { call: this, error });
    // If srgate already knows the call, let it go.
    if (this.state !== 'NEW' && this.state !== 'ACCEPTING' && this.state !== 'PREVIEWING') {
      this._client._sendOrRemember({ type: this.direction === 'outgoing' ? 'cancel' : 'hangup', id: this.id });
    } else if (this.direction === 'incoming') {
      this._client._sendOrRemember({ type: 'refuse', id: this.id });
    }
    this._end('SETUP_FAILED', { error });
  }

  /** Sends cancel or hangup and waits (bounded) for srgate's closing event. */
  _requestEnd(type, fallbackReason) {
    if (this._endTimer) return;
    this._client._sendOrRemember({ type, id: this.id });
    if (!this._client.connected) {
      this._end(fallbackReason);
      return;
    }
    this._endTimer = setTimeout(() => this._end(fallbackReason), END_WAIT_MS);
  }

  /** A message of srgate about this call, handled in arrival order. @internal */
  _onMessage(msg) {
    this._queue = this._queue.then(() => this._handle(msg)).catch((e) => {
      const error = e instanceof SrgateError ? e : new SrgateError('MEDIA_FAILED', String(e && e.message || e), { id: this.id, cause: e });
      fire(this, 'error', { call: this, error });
      fire(this._client, 'error', { call: this, error, code: error.code, message: error.message, id: this.id });
      if (!this.ended) this.hangup();
    });
  }

  async _handle(msg) {
    if (this.ended) return;
    switch (msg.type) {
      case 'local_state': {
        const s = msg.state;
        if (s === 'SENT_TO_REMOTE' && msg.sdp && this.pc) {
          await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        }
        if (this.ended) return;
        this.state = s;
        if (s === 'ACCEPTED_BY_REMOTE') this.answered = true;
        fire(this, 'localstate', msg);
        fire(this._client, 'localstate', Object.assign({ call: this }, msg));
        if (s === 'REFUSED_BY_REMOTE' || s === 'CANCELED' || s === 'FAILURE') {
          this._end(s, { error: msg.error, sip: msg.sip, response: msg.response });
        }
        break;
      }
      case 'remote_state': {
        const s = msg.state;
        if ((s === 'ACCEPTED' || s === 'PREVIEW') && msg.sdp && this.pc) {
          await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        }
        if (this.ended) return;
        this.state = s;
        if (s === 'ACCEPTED') this.answered = true;
        if (s === 'PREVIEW' && this._acceptAfterPreview) {
          const opts = this._acceptAfterPreview;
          this._acceptAfterPreview = null;
          this.accept(opts).catch(() => {});
        }
        fire(this, 'remotestate', msg);
        fire(this._client, 'remotestate', Object.assign({ call: this }, msg));
        if (s === 'CANCELED' || s === 'FAILURE') this._end(s, { error: msg.error, cause: msg.reason });
        break;
      }
      case 'hangup':
        fire(this, 'hangup', msg);
        fire(this._client, 'hangup', Object.assign({ call: this }, msg));
        this._end(msg.reason || 'REMOTE', { sip: msg.sip });
        break;
      case 'dtmf':
        fire(this, 'dtmf', msg);
        fire(this._client, 'dtmf', Object.assign({ call: this }, msg));
        break;
      case 'error': {
        const error = new SrgateError(msg.code, msg.message, { id: this.id });
        fire(this, 'error', { call: this, error });
        // A preview srgate will not give (an app's call inside srgate): still invited, accept
        // as usual.
        if (this.state === 'PREVIEWING' && msg.code !== 'NO_SUCH_CALL') {
          this._release();
          this.pc = null;
          this.state = 'INVITED';
          break;
        }
        // Our invite or accept was refused: srgate has no such call, it never started.
        if (this.state === 'INVITING' || this.state === 'ACCEPTING' || msg.code === 'NO_SUCH_CALL') {
          this._end('FAILURE', { error: msg.code });
        }
        break;
      }
      default:
        break;
    }
  }

  _release() {
    if (this.pc) {
      try { this.pc.close(); } catch { /* closed already */ }
    }
    if (this._ownStream && this.localStream) {
      for (const t of this.localStream.getTracks()) t.stop();
    }
  }

  /** The call is over: free everything, tell the listeners once. @internal */
  _end(reason, info = {}) {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    this.state = 'ENDED';
    if (this._endTimer) clearTimeout(this._endTimer);
    this._endTimer = null;
    this._release();
    this._client._calls.delete(this.id);
    fire(this, 'end', Object.assign({ call: this, reason }, info));
  }
}

/**
 * A connection to srgate: login, calls, incoming invitations.
 *
 * Events (CustomEvent, data in `detail`; call events carry `detail.call`):
 * `login` (login_ok), `localstate`, `remotestate`, `remoteinvitation` (`detail.call` is the
 * new incoming {@link Call}), `hangup`, `dtmf`, `error` (`detail.code`, `detail.message`,
 * `detail.id`, `detail.error`), `disconnected` (socket lost, reconnecting), `reconnected`,
 * `close` (the socket is gone for good: closed, kicked, or reconnecting gave up),
 * `message` / `send` (every frame received / sent, parsed; a login token shows as `***`).
 */
export class SrgateClient extends EventTarget {
  /**
   * @param {object} [opts]
   * @param {string} [opts.url] WebSocket URL; default {@link defaultUrl}().
   * @param {RTCIceServer[]} [opts.iceServers] overrides the `iceServers` of `login_ok`.
   * @param {boolean} [opts.reconnect=true] log in again by itself after the socket drops.
   * @param {number} [opts.reconnectForMs=60000] how long to keep trying.
   * @param {number} [opts.reconnectGraceMs=10000] how long srgate keeps the calls of a lost
   *   socket ({@link RECONNECT_GRACE_MS}); after it this client ends them too.
   * @param {(user: string) => Promise<string>|string} [opts.refreshToken] a fresh token for
   *   reconnecting (default: the token given to login).
   * @param {typeof WebSocket} [opts.WebSocket] for tests.
   * @param {typeof RTCPeerConnection} [opts.RTCPeerConnection] for tests.
   */
  constructor(opts = {}) {
    super();
    this.url = opts.url || defaultUrl();
    this._fixedIce = opts.iceServers || null;
    /** @type {RTCIceServer[]} */
    this.iceServers = opts.iceServers || [];
    this._reconnect = opts.reconnect !== false;
    this._reconnectFor = opts.reconnectForMs === undefined ? 60000 : opts.reconnectForMs;
    this._grace = opts.reconnectGraceMs === undefined ? RECONNECT_GRACE_MS : opts.reconnectGraceMs;
    this._refreshToken = opts.refreshToken || null;
    this._WebSocket = opts.WebSocket || globalThis.WebSocket;
    this._RTCPeerConnection = opts.RTCPeerConnection || globalThis.RTCPeerConnection;
    this._ws = null;
    this._user = null;
    this._token = null;
    this._login = null; // the login in flight: {resolve, reject, timer}
    this._pings = [];
    /** @type {Map<string, Call>} */
    this._calls = new Map();
    this._closing = false;
    this._lostAt = null;
    this._retryTimer = null;
    this._graceTimer = null;
    this._attempt = 0;
    this._owed = []; // ends asked for while disconnected, sent after the next login
  }

  /** The user logged in, or null. @returns {string|null} */
  get user() { return this._user; }

  /** Whether the socket is open and logged in. @returns {boolean} */
  get connected() { return !!this._ws && this._ws.readyState === 1 && !!this._user && !this._login; }

  /** The calls in progress. @returns {Call[]} */
  get calls() { return Array.from(this._calls.values()); }

  /**
   * Connects (if needed) and logs in. A second login of the same user elsewhere wins: this
   * client then gets `error` KICKED and `close`.
   * @param {string} user 1–64 of A-Za-z0-9_.+@-
   * @param {string} [token] HMAC token from the app's backend (ignored by an open srgate).
   * @returns {Promise<object>} the `login_ok` message (`user`, maybe `iceServers`).
   *   Rejects with SrgateError AUTH_FAILED, BAD_REQUEST, SOCKET_CLOSED or TIMEOUT.
   */
  async login(user, token = '') {
    this._closing = false;
    this._stopRetrying();
    this._token = token;
    return this._doLogin(user, token);
  }

  async _doLogin(user, token) {
    if (this._login) this._login.reject(new SrgateError('INVALID_STATE', 'superseded by a newer login'));
    await this._open();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._login = null;
        reject(new SrgateError('TIMEOUT', 'no answer to login'));
      }, REQUEST_TIMEOUT_MS);
      this._login = {
        user,
        resolve: (v) => { clearTimeout(timer); this._login = null; resolve(v); },
        reject: (e) => { clearTimeout(timer); this._login = null; reject(e); },
      };
      this._sendRaw({ type: 'login', user, token });
    });
  }

  /**
   * Calls `callee` (a SIP number, an app user, or `echo`). Returns the Call at once; the
   * microphone, the offer and the `invite` follow (`call.ready` settles when the invite is
   * sent or the setup failed).
   * @param {string} callee
   * @param {{content?: string, channelId?: string, stream?: MediaStream,
   *   audio?: MediaTrackConstraints|boolean, id?: string}} [opts]
   *   `content`, `channelId`: carried to the callee; `stream`: audio to send instead of the
   *   microphone; `audio`: getUserMedia constraints; `id`: the call id (default: random).
   * @returns {Call}
   */
  call(callee, opts = {}) {
    if (typeof callee !== 'string' || callee === '') throw new SrgateError('INVALID_ARGUMENT', 'callee must be a non-empty string');
    const id = opts.id || randomId();
    if (this._calls.has(id)) throw new SrgateError('INVALID_ARGUMENT', `call id ${id} is in use`, { id });
    if (!this.connected) throw new SrgateError('NOT_CONNECTED', 'log in first', { id });
    const call = new Call(this, {
      id, direction: 'outgoing', peer: callee, content: opts.content, channelId: opts.channelId,
    });
    this._calls.set(id, call);
    /** @type {Promise<void>} */
    call.ready = call._start(opts);
    call.ready.catch(() => {}); // surfaced as the call's `error` event too
    return call;
  }

  /**
   * Sends `ping`; resolves with the round-trip time in ms when `pong` arrives.
   * @param {number} [timeoutMs=5000]
   * @returns {Promise<number>}
   */
  ping(timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const sent = performance.now();
      const entry = { resolve: () => resolve(performance.now() - sent), reject, timer: null };
      entry.timer = setTimeout(() => {
        this._pings = this._pings.filter((p) => p !== entry);
        reject(new SrgateError('TIMEOUT', 'no pong'));
      }, timeoutMs);
      try {
        this._send({ type: 'ping' }, true);
      } catch (e) {
        clearTimeout(entry.timer);
        reject(e);
        return;
      }
      this._pings.push(entry);
    });
  }

  /** Ends every call, closes the socket, no reconnecting. Fires `close`. */
  close() {
    this._closing = true;
    this._stopRetrying();
    for (const call of this.calls) {
      if (this._ws && this._ws.readyState === 1) {
        const type = call.direction === 'incoming' && call.state === 'INVITED' ? 'refuse'
          : call.direction === 'outgoing' && !call.answered ? 'cancel' : 'hangup';
        if (call.state !== 'NEW') this._sendRaw({ type, id: call.id });
      }
      call._end('CLOSED');
    }
    this._user = null;
    this._lostAt = null;
    const ws = this._ws;
    if (ws) {
      this._onClose(ws, { code: 1000, reason: 'closed by the client' });
      try { ws.close(1000, 'bye'); } catch { /* closed already */ }
    }
  }

  // --- socket ---------------------------------------------------------------------------

  _open() {
    if (this._ws && this._ws.readyState === 1) return Promise.resolve();
    if (this._ws && this._ws.readyState === 0) return this._opening;
    const ws = new this._WebSocket(this.url);
    this._ws = ws;
    this._opening = new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => {}; // close follows with the details
      ws.onclose = (e) => {
        reject(new SrgateError('SOCKET_CLOSED', `cannot connect to ${this.url} (close code ${e.code})`));
        this._onClose(ws, e);
      };
      ws.onmessage = (e) => this._onFrame(e.data);
    });
    return this._opening;
  }

  _sendRaw(msg) {
    const text = JSON.stringify(msg);
    this._ws.send(text);
    fire(this, 'send', msg.type === 'login' ? Object.assign({}, msg, { token: '***' }) : msg);
  }

  /** Sends a request; throws NOT_CONNECTED while not logged in (ping needs only a socket). @internal */
  _send(msg, socketOnly = false) {
    const open = this._ws && this._ws.readyState === 1;
    if (!open || (!socketOnly && !this._user)) throw new SrgateError('NOT_CONNECTED', 'not connected to srgate', { id: msg.id });
    this._sendRaw(msg);
  }

  /** An end request that must reach srgate even if the socket is down right now. @internal */
  _sendOrRemember(msg) {
    if (this.connected) this._sendRaw(msg);
    else if (this._lostAt !== null) this._owed.push(msg);
  }

  _onFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // srgate sends JSON only
    }
    if (!msg || typeof msg.type !== 'string') return;
    fire(this, 'message', msg);
    const call = typeof msg.id === 'string' ? this._calls.get(msg.id) : undefined;
    switch (msg.type) {
      case 'login_ok':
        this._onLoginOk(msg);
        break;
      case 'pong': {
        const p = this._pings.shift();
        if (p) { clearTimeout(p.timer); p.resolve(); }
        break;
      }
      case 'remote_invitation': {
        if (this._calls.has(msg.id)) break;
        const c = new Call(this, {
          id: msg.id, direction: 'incoming', peer: msg.caller, callerName: msg.callerName,
          content: msg.content, channelId: msg.channelId, group: msg.group, video: msg.video,
        });
        this._calls.set(msg.id, c);
        fire(this, 'remoteinvitation', Object.assign({ call: c }, msg));
        break;
      }
      case 'error':
        this._onError(msg, call);
        break;
      case 'local_state':
      case 'remote_state':
      case 'hangup':
      case 'dtmf':
        if (call) call._onMessage(msg);
        else fire(this, msg.type.replace('_', ''), Object.assign({ call: null }, msg));
        break;
      default:
        break;
    }
  }

  _onLoginOk(msg) {
    this._user = msg.user;
    if (!this._fixedIce && Array.isArray(msg.iceServers)) this.iceServers = msg.iceServers;
    const wasLost = this._lostAt !== null;
    const lostFor = wasLost ? Date.now() - this._lostAt : 0;
    this._lostAt = null;
    this._attempt = 0;
    if (this._graceTimer) clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (this._login) this._login.resolve(msg);
    fire(this, 'login', msg);
    if (wasLost) {
      // Too late: srgate has ended these calls already.
      if (lostFor > this._grace) this._endAll('DISCONNECTED');
      const owed = this._owed;
      this._owed = [];
      for (const m of owed) this._sendRaw(m);
      fire(this, 'reconnected', { user: msg.user, lostForMs: lostFor });
    }
  }

  _onError(msg, call) {
    const error = new SrgateError(msg.code, msg.message, { id: msg.id });
    if (!msg.id && this._login && ['AUTH_FAILED', 'BAD_REQUEST', 'BAD_JSON', 'TOO_LARGE'].includes(msg.code)) {
      this._login.reject(error);
      if (this._lostAt !== null) this._giveUp('AUTH_FAILED');
    }
    if (msg.code === 'KICKED') {
      // Another login of this user took the calls over; this tab lets them go.
      this._closing = true;
      this._endAll('KICKED');
      this._user = null;
    }
    if (call) call._onMessage(msg);
    fire(this, 'error', { code: msg.code, message: msg.message, id: msg.id, error, call: call || null });
  }

  _onClose(ws, e) {
    if (ws._srgateClosed) return;
    ws._srgateClosed = true;
    if (ws !== this._ws) return; // an old socket
    this._ws = null;
    if (this._login) this._login.reject(new SrgateError('SOCKET_CLOSED', `socket closed (code ${e.code})`));
    for (const p of this._pings.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new SrgateError('SOCKET_CLOSED', 'socket closed'));
    }
    const canRetry = this._reconnect && !this._closing && this._user !== null;
    if (!canRetry) {
      if (this._lostAt !== null) return; // a failed reconnect attempt; the retry loop goes on
      this._user = null;
      this._endAll('DISCONNECTED');
      fire(this, 'close', { code: e.code, reason: e.reason });
      return;
    }
    if (this._lostAt === null) {
      this._lostAt = Date.now();
      this._graceTimer = setTimeout(() => {
        // srgate has ended the calls by now (SIP CANCEL/BYE): nothing is owed any more.
        this._owed = [];
        this._endAll('DISCONNECTED');
      }, this._grace);
      fire(this, 'disconnected', { code: e.code, reason: e.reason });
    }
    this._scheduleRetry();
  }

  _scheduleRetry() {
    if (this._retryTimer) return;
    if (Date.now() - this._lostAt > this._reconnectFor) {
      this._giveUp('gave up reconnecting');
      return;
    }
    const delay = BACKOFF_MS[Math.min(this._attempt, BACKOFF_MS.length - 1)];
    this._attempt++;
    this._retryTimer = setTimeout(async () => {
      this._retryTimer = null;
      const user = this._user;
      try {
        const token = this._refreshToken ? await this._refreshToken(user) : this._token;
        await this._doLogin(user, token);
      } catch (e) {
        if (e && e.code === 'AUTH_FAILED') return; // _giveUp done
        if (this._lostAt !== null && !this._closing) this._scheduleRetry();
      }
    }, delay);
  }

  _giveUp(reason) {
    this._stopRetrying();
    this._lostAt = null;
    this._user = null;
    this._owed = [];
    this._endAll('DISCONNECTED');
    const ws = this._ws;
    if (ws) {
      ws._srgateClosed = true;
      this._ws = null;
      try { ws.close(1000, 'bye'); } catch { /* closed already */ }
    }
    fire(this, 'close', { code: 1006, reason });
  }

  _stopRetrying() {
    if (this._retryTimer) clearTimeout(this._retryTimer);
    if (this._graceTimer) clearTimeout(this._graceTimer);
    this._retryTimer = null;
    this._graceTimer = null;
  }

  _endAll(reason) {
    for (const call of this.calls) call._end(reason);
  }
}
