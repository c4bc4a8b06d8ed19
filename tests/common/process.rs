//! A child process owned by a test: output to files, stopped by its PID.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{Deadline, wait_for};

/// How long a process gets to exit after SIGTERM before it is sent SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

pub struct Process {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    /// Starts `command` with stdin closed and stdout/stderr appended to `NAME.stdout` and
    /// `NAME.stderr` in `dir` (appended, so a restarted peer keeps one history).
    pub fn spawn(name: &str, command: &mut Command, dir: &Path) -> io::Result<Process> {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let open = |path: &Path| -> io::Result<File> {
            OpenOptions::new().create(true).append(true).open(path)
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(open(&stdout)?)
            .stderr(open(&stderr)?)
            .spawn()?;
        Ok(Process {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            stdout,
            stderr,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PID while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status once the process has exited (reaps it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                self.child = None;
                Some(status)
            }
            Ok(None) | Err(_) => None,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `within` for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_for(within, Duration::from_millis(20), || self.try_status())
    }

    /// Sends SIGTERM to this process (by its PID) without waiting.
    pub fn signal_term(&mut self) {
        if let Some(pid) = self.pid() {
            send_sigterm(pid);
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status and whether the
    /// process exited within the grace period.
    pub fn terminate(&mut self, grace: Duration) -> (ExitStatus, bool) {
        if let Some(status) = self.try_status() {
            return (status, true);
        }
        self.signal_term();
        if let Some(status) = self.wait_exit(grace) {
            return (status, true);
        }
        let mut child = self
            .child
            .take()
            .expect("a process that has not exited still has its Child");
        let _ = child.kill(); // SIGKILL to this PID only
        let status = child
            .wait()
            .expect("waiting for a child we just killed succeeds");
        self.status = Some(status);
        (status, false)
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "----- {} stdout ({}) -----\n{}\n----- {} stderr ({}) -----\n{}",
            self.name,
            self.stdout.display(),
            read(&self.stdout),
            self.name,
            self.stderr.display(),
            read(&self.stderr)
        )
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.terminate(TERM_GRACE);
        }
    }
}

/// SIGTERM to one PID, through the shell's builtin `kill` (no unsafe code, and no
/// dependency on procps being installed).
pub fn send_sigterm(pid: u32) {
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            "kill -TERM \"$1\" 2>/dev/null",
            "sh",
            &pid.to_string(),
        ])
        .status();
}

/// SIGKILL to one PID (for processes that are not our children, e.g. Kamailio's workers).
pub fn send_sigkill(pid: u32) {
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            "kill -KILL \"$1\" 2>/dev/null",
            "sh",
            &pid.to_string(),
        ])
        .status();
}

/// The PIDs whose parent is `parent` (from /proc/PID/stat).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after
    // the last ')'
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// True while a process with this PID exists and is not a zombie (a zombie holds no
/// sockets any more; its parent may never reap it).
pub fn pid_exists(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    state != Some("Z")
}

/// Waits until none of `pids` exists, up to `within`.
pub fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Deadline::after(within);
    loop {
        if pids.iter().all(|pid| !pid_exists(*pid)) {
            return true;
        }
        if deadline.passed() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
