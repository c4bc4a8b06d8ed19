//! nginx with Debian's `libnginx-mod-rtmp` as the RTMP server of the tests: one process
//! (`master_process off`, `daemon off`) on a free loopback port, every path under the
//! test's folder, one `live` application that records each stream to `NAME.flv`; with a
//! certificate, nginx's stream module also terminates TLS on a second port in front of
//! it (an RTMPS endpoint, as services run theirs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::Process;
use super::{find_binary, net};

/// Where Debian installs the modules.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

pub struct NginxRtmp {
    pub port: u16,
    /// The RTMPS port (TLS terminated by the stream module), when started with a certificate.
    pub tls_port: Option<u16>,
    /// Where `record all` writes `STREAM.flv`.
    pub record_dir: PathBuf,
    process: Process,
}

/// True when the module is installed; otherwise says why the test is skipped, or panics
/// when `CI` is set (like [`super::peers_available`]).
pub fn module_available(module: &str, package: &str) -> bool {
    if Path::new(module).is_file() {
        return true;
    }
    super::peer_missing(&format!(
        "missing {module} (Debian package {package}); scripts/test installs it"
    ))
}

impl NginxRtmp {
    /// Starts nginx and waits (bounded) until its RTMP port listens; with `tls` (the
    /// certificate and key files), an RTMPS port too.
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> NginxRtmp {
        let [port, tls_port] = net::free_ports::<2>();
        let (stream_module, stream_block) = match tls {
            None => (String::new(), String::new()),
            Some((cert, key)) => (
                format!("load_module {STREAM_MODULE};\n"),
                format!(
                    "stream {{\n\
                     \x20 server {{\n\
                     \x20   listen 127.0.0.1:{tls_port} ssl;\n\
                     \x20   ssl_certificate {};\n\
                     \x20   ssl_certificate_key {};\n\
                     \x20   proxy_pass 127.0.0.1:{port};\n\
                     \x20 }}\n\
                     }}\n",
                    cert.display(),
                    key.display()
                ),
            ),
        };
        let record_dir = dir.join("record");
        std::fs::create_dir_all(&record_dir).expect("the test dir is writable");
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\n\
                 master_process off;\n\
                 error_log {dir}/nginx-error.log info;\n\
                 pid {dir}/nginx.pid;\n\
                 load_module {RTMP_MODULE};\n\
                 {stream_module}\
                 events {{ worker_connections 64; }}\n\
                 rtmp {{\n\
                 \x20 server {{\n\
                 \x20   listen 127.0.0.1:{port};\n\
                 \x20   chunk_size 4096;\n\
                 \x20   application live {{\n\
                 \x20     live on;\n\
                 \x20     record all;\n\
                 \x20     record_path {record};\n\
                 \x20   }}\n\
                 \x20 }}\n\
                 }}\n\
                 {stream_block}",
                dir = dir.display(),
                record = record_dir.display(),
            ),
        )
        .expect("the test dir is writable");
        let nginx = find_binary("nginx").expect("peers_available checked nginx");
        let process = Process::spawn(
            "nginx",
            Command::new(nginx)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("nginx-error.log"))
                .arg("-c")
                .arg(&conf),
            dir,
        )
        .expect("nginx starts");
        let mut nginx = NginxRtmp {
            port,
            tls_port: tls.map(|_| tls_port),
            record_dir,
            process,
        };
        let listening = net::wait_port_bound(port, false, Duration::from_secs(10))
            && (tls.is_none() || net::wait_port_bound(tls_port, false, Duration::from_secs(5)));
        if !listening {
            nginx.process.terminate(Duration::from_secs(2));
            panic!(
                "nginx did not listen on {port}\n{}\n{}",
                nginx.process.output(),
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
        }
        nginx
    }

    /// `rtmp://127.0.0.1:PORT/live/`
    pub fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live/", self.port)
    }

    /// `rtmps://127.0.0.1:TLS_PORT/live/` (the test certificate names 127.0.0.1).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("rtmps://127.0.0.1:{port}/live/"))
    }

    /// Stops nginx by its PID (SIGTERM: a fast shutdown that closes recordings).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }

    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// Starts ffprobe on the live stream `live` (audio only: it does not wait the default 5 s
/// for a video track; I/O bounded to 5 s): its stdout lists each stream's type, codec,
/// sample rate and channels.
pub fn probe_live(live: &str, dir: &Path) -> Process {
    Process::spawn(
        "ffprobe",
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "5000000"])
            .args(["-analyzeduration", "1000000"])
            .args([
                "-show_entries",
                "stream=codec_type,codec_name,sample_rate,channels",
            ])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(live),
        dir,
    )
    .expect("ffprobe starts")
}
