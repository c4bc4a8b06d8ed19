//! nginx with Debian's `libnginx-mod-rtmp` as the RTMP server of the tests: one process
//! (`master_process off`, `daemon off`) on a free loopback port, every path under the
//! test's folder, one `live` application that records each stream to `NAME.flv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::Process;
use super::{find_binary, net};

/// Where Debian installs the module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

pub struct NginxRtmp {
    pub port: u16,
    /// Where `record all` writes `STREAM.flv`.
    pub record_dir: PathBuf,
    process: Process,
}

/// True when the module is installed; otherwise says why the test is skipped, or panics
/// when `CI` is set (like [`super::peers_available`]).
pub fn module_available() -> bool {
    if Path::new(RTMP_MODULE).is_file() {
        return true;
    }
    super::peer_missing(&format!(
        "missing {RTMP_MODULE} (Debian package libnginx-mod-rtmp); scripts/test installs it"
    ))
}

impl NginxRtmp {
    /// Starts nginx and waits (bounded) until its RTMP port listens.
    pub fn start(dir: &Path) -> NginxRtmp {
        let [port] = net::free_ports::<1>();
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
                 }}\n",
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
            record_dir,
            process,
        };
        if !net::wait_port_bound(port, false, Duration::from_secs(10)) {
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

    /// Stops nginx by its PID (SIGTERM: a fast shutdown that closes recordings).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }

    pub fn output(&self) -> String {
        self.process.output()
    }
}
