//! What the kernel says about a process: CPU time per thread (`/proc/PID/task/*/schedstat`,
//! nanoseconds on the CPU) and resident memory (`VmRSS`). The harness reads these for
//! srgate, the reflector and itself, before and after a measurement window.

use std::collections::BTreeMap;
use std::fs;

/// CPU nanoseconds per thread of one process, keyed by thread id, with the thread's name.
#[derive(Clone, Debug, Default)]
pub struct CpuSnapshot {
    pub threads: BTreeMap<u32, (String, u64)>,
}

impl CpuSnapshot {
    /// Reads every thread of `pid`; a thread that ends while being read is left out.
    pub fn of(pid: u32) -> CpuSnapshot {
        let mut threads = BTreeMap::new();
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return CpuSnapshot { threads };
        };
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let Some(ns) = fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            else {
                continue;
            };
            let name = fs::read_to_string(path.join("comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            threads.insert(tid, (name, ns));
        }
        CpuSnapshot { threads }
    }

    /// CPU nanoseconds each thread spent since `before` (threads new since then count from 0),
    /// by thread id.
    pub fn since(&self, before: &CpuSnapshot) -> Vec<(u32, String, u64)> {
        self.threads
            .iter()
            .map(|(tid, (name, ns))| {
                let was = before.threads.get(tid).map_or(0, |(_, ns)| *ns);
                (*tid, name.clone(), ns.saturating_sub(was))
            })
            .collect()
    }
}

/// `VmRSS` of `pid` in KiB (0 when the process is gone).
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// `RssAnon` of `pid` in KiB: the heap and other private memory, without the pages of the
/// binary and libraries that running code maps in.
pub fn rss_anon_kb(pid: u32) -> u64 {
    status_kb(pid, "RssAnon:")
}

fn status_kb(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The calling thread's id (for reading its own schedstat).
pub fn thread_id() -> u32 {
    // gettid has no std wrapper; the syscall cannot fail.
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// CPU nanoseconds of one thread of this process.
pub fn thread_cpu_ns(tid: u32) -> u64 {
    fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // "pid (comm) state ppid …": comm may hold spaces, the fields after it do not
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Datagrams the kernel dropped on `pid`'s UDP sockets because their receive buffer was
/// full (the `drops` column of `/proc/net/udp` and `udp6`, summed over the sockets whose
/// inode the process holds).
pub fn udp_drops(pid: u32) -> u64 {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            if let Ok(target) = fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut drops = 0;
    for table in ["udp", "udp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            if fields.len() >= 13 && inodes.contains(fields[9]) {
                drops += fields[12].parse::<u64>().unwrap_or(0);
            }
        }
    }
    drops
}
