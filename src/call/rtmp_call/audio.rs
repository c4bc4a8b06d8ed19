//! A REST call's audio clock: every 20 ms one frame of the phone's audio (or silence) is
//! encoded to AAC and sent on the stream.

use std::time::Instant;

use super::*;

#[cfg(feature = "aac")]
impl RtmpCalls {
    /// Call `index`'s audio ticks due at `now`: one 20 ms frame each (the phone's audio,
    /// or silence), encoded, sent while the stream publishes.
    pub(super) fn tick(&mut self, now: Instant, index: usize) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        let Some(mut next) = call.next_tick else {
            return;
        };
        #[cfg(test)]
        super::tests::fault_at(call.fault, super::tests::Fault::Tick);
        let mut ticks = 0;
        while next <= now {
            if ticks == MAX_CATCH_UP {
                // far behind (the loop stalled): the timeline goes on from now
                next = now + TICK;
                break;
            }
            ticks += 1;
            next += TICK;
            let Some(audio) = call.audio.as_mut() else {
                break;
            };
            let pushed = match audio.decode.poll_pcm(now, &mut audio.pcm) {
                Some(_) => audio.aac.push_pcm(&audio.pcm),
                None => audio.aac.push_silence(),
            };
            if pushed.is_err() {
                call.frames_dropped += 1;
                continue;
            }
            let mut asc = [0u8; 8];
            let config = audio.aac.audio_specific_config();
            let asc_len = config.len().min(asc.len());
            asc[..asc_len].copy_from_slice(&config[..asc_len]);
            while let Some(frame) = audio.aac.poll_frame() {
                let Ok(frame) = frame else {
                    call.frames_dropped += 1;
                    continue;
                };
                call.aac_frames += 1;
                let Some(session) = call.session.as_mut() else {
                    call.frames_dropped += 1;
                    continue;
                };
                if session.publisher.state() != crate::rtmp::State::Publishing {
                    call.frames_dropped += 1;
                    continue;
                }
                if !session.header_sent {
                    let audio_meta = [
                        ("audiocodecid", crate::rtmp::FLV_AUDIO_AAC),
                        ("audiosamplerate", 48_000.0),
                        ("audiosamplesize", 16.0),
                        ("audiochannels", 1.0),
                        ("stereo", 0.0),
                        // AVC, when the phone sends video
                        ("videocodecid", 7.0),
                    ];
                    let fields = if call.video.is_some() { 6 } else { 5 };
                    let sent = session
                        .publisher
                        .send_metadata(&audio_meta[..fields])
                        .and_then(|_| {
                            session.publisher.send_audio(
                                0,
                                &[&crate::rtmp::AAC_SEQUENCE_HEADER, &asc[..asc_len]],
                            )
                        });
                    if sent.is_err() {
                        // not written (the server reads too slowly): a frame without
                        // its header could not be decoded; both again with the next
                        call.frames_dropped += 1;
                        continue;
                    }
                    session.header_sent = true;
                }
                let ms = frame.timestamp_ms();
                let base = *session.ts_base.get_or_insert(ms);
                let sent = session
                    .publisher
                    .send_audio(ms.wrapping_sub(base), &[&crate::rtmp::AAC_RAW, frame.data]);
                if sent.is_err() {
                    // the server reads too slowly: dropped, as a live stream would
                    call.frames_dropped += 1;
                }
            }
        }
        call.next_tick = Some(next);
    }
}

#[cfg(not(feature = "aac"))]
impl RtmpCalls {
    pub(super) fn tick(&mut self, _: Instant, _: usize) {}
}
