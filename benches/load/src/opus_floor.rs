//! The transcoding floor: raw libopus doing what srgate does for one transcoded call —
//! decode the browser's Opus frame and encode one for the browser, 50 times a second, at
//! srgate's settings (8 kHz PCM toward G.711, VoIP, in-band FEC, complexity 5), through the
//! same wrappers. Calls a core could carry if transcoding cost nothing else.

use std::time::{Duration, Instant};

use srgate::media::codec::opus::{OpusDecoder, OpusEncoder};
use srgate::media::codec::{MAX_FRAME_SAMPLES, SampleRate};

/// Calls per core raw libopus could transcode with `calls` calls' codec states (one
/// decoder and one encoder each, served in turn, as a gateway's are: their state does not
/// all stay in the CPU's caches), measured on this thread for `time` of wall
/// time; the cost is this thread's CPU time (schedstat), as srgate's is, so time the
/// thread spent preempted on a busy machine does not count against libopus.
pub fn libopus_calls_per_core(time: Duration, calls: usize) -> Result<f64, String> {
    let frames = crate::payload::opus_tone_frames()?;
    let mut codecs = (0..calls.max(1))
        .map(|_| {
            Ok((
                OpusDecoder::new(SampleRate::Hz8000).map_err(|e| format!("{e:?}"))?,
                OpusEncoder::new(SampleRate::Hz8000, 5).map_err(|e| format!("{e:?}"))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut pcm = [0i16; MAX_FRAME_SAMPLES];
    let mut out = [0u8; 1500];
    let tid = crate::procfs::thread_id();
    let cpu_before = crate::procfs::thread_cpu_ns(tid);
    let start = Instant::now();
    let mut pairs = 0u64;
    // bounded by `time`
    while start.elapsed() < time {
        let n_codecs = codecs.len();
        let (dec, enc) = &mut codecs[pairs as usize % n_codecs];
        // each call's decoder gets its stream's frames in order
        let frame = &frames[(pairs as usize / n_codecs) % frames.len()];
        let n = dec.decode(frame, &mut pcm).map_err(|e| format!("{e:?}"))?;
        enc.encode(&pcm[..n], &mut out)
            .map_err(|e| format!("{e:?}"))?;
        pairs += 1;
    }
    let cpu = crate::procfs::thread_cpu_ns(tid).saturating_sub(cpu_before);
    let cpu = if cpu > 0 {
        cpu as f64 / 1e9
    } else {
        start.elapsed().as_secs_f64() // no schedstat: wall time
    };
    let per_pair = cpu / pairs.max(1) as f64;
    Ok(1.0 / (50.0 * per_pair))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_floor_is_measured() {
        let calls = super::libopus_calls_per_core(std::time::Duration::from_millis(50), 4).unwrap();
        assert!(calls > 1.0, "{calls}");
    }
}
