//! Opus (RFC 6716) through libopus, payload format RFC 7587: one encoder or decoder per
//! stream, created at stream setup; coding a frame allocates nothing (libopus works in the
//! state it allocated at creation and on the stack).
//!
//! Mono throughout: a stereo packet from a browser (SDP says `opus/48000/2` always) is
//! decoded down-mixed to mono, and srgate sends mono, which every receiver accepts
//! (RFC 7587 §3.4).

use ::opus as libopus;

use super::{CodecError, SampleRate};

/// Largest payload of one 20 ms Opus frame (RFC 6716 §3.2.1: 1275 bytes per frame).
pub const MAX_PAYLOAD: usize = 1275;

/// Expected loss rate told to the encoder so that it puts in-band FEC (LBRR) into its
/// packets (RFC 7587 §3.3; libopus adds none at 0 %).
pub const DEFAULT_EXPECTED_LOSS_PERCENT: u8 = 10;

fn opus_error(e: libopus::Error) -> CodecError {
    CodecError::Opus(e.code() as i32)
}

/// Decodes one incoming Opus stream to mono PCM at a fixed rate.
pub struct OpusDecoder {
    decoder: libopus::Decoder,
    rate: SampleRate,
}

impl OpusDecoder {
    pub fn new(rate: SampleRate) -> Result<OpusDecoder, CodecError> {
        let decoder =
            libopus::Decoder::new(rate.hz(), libopus::Channels::Mono).map_err(opus_error)?;
        Ok(OpusDecoder { decoder, rate })
    }

    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The samples (at this decoder's rate) a packet holds, from its TOC byte and frame
    /// count (RFC 6716 §3.1); `None` for a packet libopus cannot size.
    pub fn packet_samples(&self, packet: &[u8]) -> Option<usize> {
        if packet.is_empty() {
            return None;
        }
        libopus::packet::get_nb_samples(packet, self.rate.hz())
            .ok()
            .filter(|&n| n > 0)
    }

    /// Decodes a packet into `pcm`; returns the samples written. A packet longer than
    /// `pcm` is [`CodecError::FrameSize`].
    pub fn decode(&mut self, packet: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        if packet.is_empty() {
            // An empty payload would mean "lost" to libopus; on the wire it is malformed.
            return Err(CodecError::Opus(-4));
        }
        self.decoder
            .decode(packet, pcm, false)
            .map_err(|e| match e.code() {
                libopus::ErrorCode::BufferTooSmall => CodecError::FrameSize,
                _ => opus_error(e),
            })
    }

    /// Packet loss concealment: all of `pcm` (a multiple of 2.5 ms) extrapolated from the
    /// decoder's history.
    pub fn conceal(&mut self, pcm: &mut [i16]) -> Result<usize, CodecError> {
        self.decoder.decode(&[], pcm, false).map_err(opus_error)
    }

    /// Forward error correction: rebuilds the lost packet before `next` (as long as
    /// `pcm`) from the low-bitrate copy `next` carries in-band (RFC 6716 §2.1.7). When
    /// `next` carries none, libopus conceals instead. `next` itself must still be decoded
    /// afterwards.
    pub fn recover(&mut self, next: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        if next.is_empty() {
            return self.conceal(pcm);
        }
        self.decoder.decode(next, pcm, true).map_err(opus_error)
    }

    /// Forgets the stream's history.
    pub fn reset(&mut self) {
        // Resetting a valid decoder cannot fail; a failure would leave old state, harmless.
        let _ = self.decoder.reset_state();
    }
}

/// Encodes mono PCM at a fixed rate to one Opus packet per 20 ms.
pub struct OpusEncoder {
    encoder: libopus::Encoder,
    rate: SampleRate,
}

/// The bitrate of an encoder fed 16 kHz PCM (from G.722).
const WIDEBAND_BITRATE: i32 = 32_000;

impl OpusEncoder {
    /// A VoIP-tuned encoder with in-band FEC on and `complexity` 0-10 (`[media]
    /// opus_complexity`; larger values are clamped to 10).
    pub fn new(rate: SampleRate, complexity: u8) -> Result<OpusEncoder, CodecError> {
        let mut encoder = libopus::Encoder::new(
            rate.hz(),
            libopus::Channels::Mono,
            libopus::Application::Voip,
        )
        .map_err(opus_error)?;
        encoder
            .set_complexity(i32::from(complexity.min(10)))
            .map_err(opus_error)?;
        encoder.set_inband_fec(true).map_err(opus_error)?;
        encoder
            .set_packet_loss_perc(i32::from(DEFAULT_EXPECTED_LOSS_PERCENT))
            .map_err(opus_error)?;
        if rate == SampleRate::Hz16000 {
            // libopus' own choice at 16 kHz with FEC (about 19 kbit/s) is mediumband, which
            // cuts a G.722 phone's 6-7 kHz: 32 kbit/s (a browser's default) keeps wideband
            encoder
                .set_bitrate(libopus::Bitrate::Bits(WIDEBAND_BITRATE))
                .map_err(opus_error)?;
        }
        Ok(OpusEncoder { encoder, rate })
    }

    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The loss rate the encoder plans its FEC for, e.g. from RTCP receiver reports.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        self.encoder
            .set_packet_loss_perc(i32::from(percent.min(100)))
            .map_err(opus_error)
    }

    /// Target bitrate in bit/s (libopus' own choice until set).
    pub fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), CodecError> {
        let bps = i32::try_from(bits_per_second).map_err(|_| CodecError::Opus(-1))?;
        self.encoder
            .set_bitrate(libopus::Bitrate::Bits(bps))
            .map_err(opus_error)
    }

    /// Encodes exactly one 20 ms frame (`pcm.len() == rate().frame_samples()`) into `out`;
    /// returns the packet length. `out` of [`MAX_PAYLOAD`] bytes always suffices.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() != self.rate.frame_samples() {
            return Err(CodecError::FrameSize);
        }
        self.encoder.encode(pcm, out).map_err(|e| match e.code() {
            libopus::ErrorCode::BufferTooSmall => CodecError::BufferTooSmall,
            _ => opus_error(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_FRAME_SAMPLES;
    use super::*;

    fn sine(rate: SampleRate, freq: f64, frame: usize, out: &mut [i16]) {
        let hz = f64::from(rate.hz());
        let len = out.len();
        for (i, s) in out.iter_mut().enumerate() {
            let t = (frame * len + i) as f64 / hz;
            *s = (12_000.0 * (2.0 * core::f64::consts::PI * freq * t).sin()) as i16;
        }
    }

    fn energy(pcm: &[i16]) -> f64 {
        pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64
    }

    #[test]
    fn round_trip_at_every_rate() {
        for rate in [SampleRate::Hz8000, SampleRate::Hz16000, SampleRate::Hz48000] {
            let n = rate.frame_samples();
            let mut enc = OpusEncoder::new(rate, 5).expect("encoder");
            let mut dec = OpusDecoder::new(rate).expect("decoder");
            let mut pcm = [0i16; MAX_FRAME_SAMPLES];
            let mut out = [0i16; MAX_FRAME_SAMPLES];
            let mut packet = [0u8; MAX_PAYLOAD];
            let mut last_energy = 0.0;
            for frame in 0..25 {
                sine(rate, 440.0, frame, &mut pcm[..n]);
                let len = enc.encode(&pcm[..n], &mut packet).expect("encode");
                assert!(len > 0 && len < 400, "{rate:?}: {len} bytes");
                assert_eq!(
                    dec.decode(&packet[..len], &mut out[..n]).expect("decode"),
                    n
                );
                last_energy = energy(&out[..n]);
            }
            // A 12000-amplitude sine has mean energy 7.2e7; after the codec's start-up the
            // output must carry most of it.
            assert!(last_energy > 3.0e7, "{rate:?}: energy {last_energy}");
        }
    }

    #[test]
    fn plc_and_fec_fill_a_lost_frame() {
        let rate = SampleRate::Hz48000;
        let n = rate.frame_samples();
        let mut enc = OpusEncoder::new(rate, 5).expect("encoder");
        let mut packets = [[0u8; MAX_PAYLOAD]; 30];
        let mut lens = [0usize; 30];
        let mut pcm = [0i16; MAX_FRAME_SAMPLES];
        for frame in 0..30 {
            sine(rate, 440.0, frame, &mut pcm[..n]);
            lens[frame] = enc.encode(&pcm[..n], &mut packets[frame]).expect("encode");
        }
        let mut out = [0i16; MAX_FRAME_SAMPLES];

        // PLC: frame 20 lost, nothing after it known.
        let mut dec = OpusDecoder::new(rate).expect("decoder");
        for frame in 0..20 {
            dec.decode(&packets[frame][..lens[frame]], &mut out)
                .expect("decode");
        }
        assert_eq!(dec.conceal(&mut out[..n]).expect("plc"), n);
        assert!(energy(&out[..n]) > 1.0e7, "PLC continues the tone");

        // FEC: frame 20 lost, rebuilt from frame 21's in-band copy.
        let mut dec = OpusDecoder::new(rate).expect("decoder");
        for frame in 0..20 {
            dec.decode(&packets[frame][..lens[frame]], &mut out)
                .expect("decode");
        }
        assert_eq!(
            dec.recover(&packets[21][..lens[21]], &mut out[..n])
                .expect("fec"),
            n
        );
        assert!(energy(&out[..n]) > 1.0e7, "FEC rebuilds the tone");
        assert_eq!(
            dec.decode(&packets[21][..lens[21]], &mut out)
                .expect("decode"),
            n
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut dec = OpusDecoder::new(SampleRate::Hz8000).expect("decoder");
        let mut out = [0i16; MAX_FRAME_SAMPLES];
        assert!(dec.decode(&[], &mut out).is_err());
        // TOC byte for a 60 ms SILK frame: more than a 20 ms buffer holds.
        assert_eq!(dec.packet_samples(&[0x18, 0, 0]), Some(480));
        assert_eq!(
            dec.decode(&[0x18, 0, 0], &mut out[..160]),
            Err(CodecError::FrameSize)
        );
        assert_eq!(dec.packet_samples(&[]), None);
        // Code 3 packet with a frame count of 0 is invalid (RFC 6716 §3.2.5).
        assert!(dec.decode(&[0x03, 0x00], &mut out).is_err());

        let mut enc = OpusEncoder::new(SampleRate::Hz8000, 5).expect("encoder");
        let mut packet = [0u8; MAX_PAYLOAD];
        assert_eq!(
            enc.encode(&[0; 100], &mut packet),
            Err(CodecError::FrameSize)
        );
        assert!(enc.encode(&[0; 160], &mut packet[..0]).is_err());
        // One byte is enough for libopus: it then sends a TOC-only (DTX) packet.
        assert_eq!(enc.encode(&[0; 160], &mut packet[..1]), Ok(1));
    }
}
