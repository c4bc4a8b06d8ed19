//! baresip as a SIP phone with audio: it plays a WAV file as its microphone (aufile),
//! records what it hears (sndfile: `dump-*-dec.wav` in its folder), answers incoming calls
//! by itself (`answermode=auto`, unless told otherwise) and obeys commands sent to its
//! `cons` module over UDP (`/dial URI`, `/hangup`, digits as DTMF key presses).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{free_ports, local, port_bound};
use super::process::Process;
use super::{find_binary, wait_for};

pub struct SipPhone {
    process: Process,
    dir: PathBuf,
    pub sip_port: u16,
    cons_port: u16,
}

impl SipPhone {
    /// `account`: baresip's account line, e.g.
    /// `<sip:1006@127.0.0.1:5060>;auth_pass=1006pw;regint=60;answermode=auto`.
    pub fn start(dir: &Path, name: &str, account: &str, tone: &Path) -> SipPhone {
        SipPhone::start_with(dir, name, account, tone, "")
    }

    /// [`SipPhone::start`] with `extra` lines for baresip's configuration (e.g.
    /// `sip_cafile` for TLS).
    pub fn start_with(dir: &Path, name: &str, account: &str, tone: &Path, extra: &str) -> SipPhone {
        // baresip also listens for SIP over TLS on the SIP port + 1 and will not start
        // when that one is taken: pick a port whose neighbour is free too (bounded).
        let mut sip_port = free_ports::<1>()[0];
        for _ in 0..50 {
            let next = sip_port.wrapping_add(1);
            if next > 1024 && !port_bound(next, false) && !port_bound(next, true) {
                break;
            }
            sip_port = free_ports::<1>()[0];
        }
        let [cons_port] = free_ports::<1>();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("the test dir is writable");
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             audio_player\t\talsa,null\n\
             audio_source\t\taufile,{tone}\n\
             audio_alert\t\talsa,null\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\taufile.so\n\
             module\t\t\tsndfile.so\n\
             module\t\t\tcons.so\n\
             module\t\t\tsrtp.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             cons_listen\t\t127.0.0.1:{cons_port}\n\
             snd_path\t\t{dir}\n\
             {extra}",
            tone = tone.display(),
            dir = dir.display()
        );
        std::fs::write(dir.join("config"), config).expect("the test dir is writable");
        std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("writable");
        std::fs::write(dir.join("contacts"), "").expect("writable");
        let binary = find_binary("baresip").unwrap_or_else(|| PathBuf::from("baresip"));
        // Line-buffered stdout (coreutils' stdbuf): its events are read as they happen.
        let process = Process::spawn(
            name,
            Command::new("stdbuf")
                .arg("-oL")
                .arg(binary)
                .arg("-f")
                .arg(&dir)
                .args(["-t", "600"])
                .current_dir(&dir),
            &dir,
        )
        .expect("baresip starts");
        SipPhone {
            process,
            dir,
            sip_port,
            cons_port,
        }
    }

    /// What baresip printed on stdout so far (its events; the status line goes to
    /// stderr, so offsets into this text stay valid).
    /// baresip as SIP user `user` registered at srgate's `gateway` (digest `password`,
    /// answering by itself), playing `tone`; panics with its output if the REGISTER does
    /// not succeed `within`. `params`: more account parameters, e.g. `;mediaenc=srtp-mand`
    /// (baresip's srtp module: SDES, RTP/SAVP offered and nothing plain accepted).
    pub fn registered(
        dir: &Path,
        gateway: std::net::SocketAddr,
        user: &str,
        password: &str,
        tone: &Path,
        within: Duration,
        params: &str,
    ) -> SipPhone {
        let phone = SipPhone::start(
            dir,
            &format!("baresip-{user}"),
            &format!(
                "<sip:{user}@{gateway};transport=udp>;auth_pass={password};regint=60;answermode=auto{params}"
            ),
            tone,
        );
        phone.must_register(user, within);
        phone
    }

    /// baresip as SIP user `user` registered over TLS at srgate's `[sip] tls_listen`
    /// (`gateway`), trusting the authority `ca`; otherwise as [`SipPhone::registered`].
    pub fn registered_tls(
        dir: &Path,
        gateway: std::net::SocketAddr,
        user: &str,
        password: &str,
        tone: &Path,
        ca: &Path,
        within: Duration,
    ) -> SipPhone {
        let phone = SipPhone::start_with(
            dir,
            &format!("baresip-{user}"),
            &format!(
                "<sip:{user}@{gateway};transport=tls>;auth_pass={password};regint=60;answermode=auto"
            ),
            tone,
            &format!("sip_cafile\t\t{}\n", ca.display()),
        );
        phone.must_register(user, within);
        phone
    }

    /// Panics with baresip's output unless `user`'s REGISTER succeeds `within`.
    pub fn must_register(&self, user: &str, within: Duration) {
        let phone = self;
        assert!(
            phone
                .wait_for_line(0, &[&format!("{user}@"), "200 OK"], within)
                .is_some(),
            "baresip {user} registers at srgate:\n{}",
            phone.output()
        );
    }

    pub fn output(&self) -> String {
        self.process.stdout_text()
    }

    /// Waits until the output has a line holding every needle, counted from `after`
    /// bytes of output on; returns the line.
    pub fn wait_for_line(
        &self,
        after: usize,
        needles: &[&str],
        within: Duration,
    ) -> Option<String> {
        wait_for(within, Duration::from_millis(100), || {
            let out = self.output();
            out.get(after.min(out.len())..)?
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
                .map(str::to_owned)
        })
    }

    /// Output length so far (a mark for [`SipPhone::wait_for_line`]).
    pub fn mark(&self) -> usize {
        self.output().len()
    }

    /// Sends `text` to the cons module (a newline ends a command).
    pub fn send(&self, text: &str) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        socket
            .send_to(text.as_bytes(), local(self.cons_port))
            .expect("cons is reachable");
    }

    pub fn dial(&self, uri: &str) {
        self.send(&format!("/dial {uri}\n"));
    }

    pub fn hangup(&self) {
        self.send("/hangup\n");
    }

    /// The newest recording of received audio.
    pub fn last_recording(&self) -> Option<PathBuf> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        files.pop().map(|(_, p)| p)
    }

    pub fn stop(&mut self) {
        self.process.terminate(super::process::TERM_GRACE);
    }

    /// The phone vanishes: SIGKILL, no BYE, no un-REGISTER (waits until it is gone).
    pub fn vanish(&mut self) {
        if let Some(pid) = self.process.pid() {
            super::process::send_sigkill(pid);
        }
        let gone = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            self.process.try_status()
        });
        assert!(gone.is_some(), "baresip did not die on SIGKILL");
    }
}

impl Drop for SipPhone {
    fn drop(&mut self) {
        self.stop();
    }
}
