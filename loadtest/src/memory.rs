//! Server memory (`VmRSS` from `/proc/PID/status`) and this process's open-file limit.

use std::fmt::Write as _;

use serde_json::{json, Value};

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn mib(kib: Option<u64>) -> String {
    match kib {
        Some(k) => format!("{:.1} MiB", k as f64 / 1024.0),
        None => "n/a".into(),
    }
}

fn open_files_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

pub fn check_fd_limit(needed: usize) {
    if let Some(limit) = open_files_soft_limit() {
        if (limit as u128) < needed as u128 {
            eprintln!(
                "warning: open-file limit is {limit} but this run needs about {needed} sockets; \
run `ulimit -n 65536` in this shell (and in the server's) first"
            );
        }
    }
}

/// Labelled `VmRSS` samples of each `--server-pid`.
pub struct Rss {
    pids: Vec<u32>,
    samples: Vec<(String, Vec<Option<u64>>)>,
}

impl Rss {
    pub fn new(pids: &[u32]) -> Self {
        for pid in pids {
            if rss_kib(*pid).is_none() {
                eprintln!("warning: cannot read VmRSS of pid {pid} (/proc/{pid}/status)");
            }
        }
        Self {
            pids: pids.to_vec(),
            samples: Vec::new(),
        }
    }
    pub fn sample(&mut self, label: &str) {
        let values = self.pids.iter().map(|p| rss_kib(*p)).collect();
        self.samples.push((label.to_string(), values));
    }
    pub fn get(&self, label: &str, i: usize) -> Option<u64> {
        self.samples
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, v)| v[i])
    }
    pub fn json(&self) -> Value {
        Value::Array(
            self.pids
                .iter()
                .enumerate()
                .map(|(i, pid)| {
                    let mut m = serde_json::Map::new();
                    m.insert("pid".into(), json!(pid));
                    for (label, v) in &self.samples {
                        m.insert(format!("{label}_kib"), json!(v[i]));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, pid) in self.pids.iter().enumerate() {
            let parts: Vec<String> = self
                .samples
                .iter()
                .map(|(label, v)| format!("{} {}", label.replace('_', " "), mib(v[i])))
                .collect();
            let _ = writeln!(out, "server rss       pid {pid}: {}", parts.join(", "));
        }
        out
    }
}
