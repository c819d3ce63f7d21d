//! A Redis Cluster of a test's own: six `redis-server` processes on free loopback ports (three
//! masters, one replica each), created with `redis-cli --cluster create`, and a node timeout
//! of 2 s so a failover takes seconds.
//!
//! Every node runs under a small shell watchdog that stops it, and removes its data, when the
//! test process is gone however it ended (a panic, a `kill -9`), and dropping the cluster stops
//! them at once: a shared cluster kept in a `static` for a whole test binary is torn down too.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// `redis-cli -p port args…`, its standard output.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Node {
    port: u16,
    bus: u16,
    child: Option<Child>,
}

/// The cluster; dropping it stops every node and removes their data.
pub struct OwnRedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl OwnRedisCluster {
    /// Six nodes, three masters with a replica each, every slot covered and the cluster `ok`.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("asynctasq-cluster-{}-{:08x}", std::process::id(), crate::fastrand_u32()));
        let mut cluster = Self { nodes: Vec::new(), dir };
        // Twelve distinct free ports: a client port and a cluster bus port per node.
        let mut ports = std::collections::BTreeSet::new();
        while ports.len() < 12 {
            ports.insert(free_port());
        }
        let ports: Vec<u16> = ports.into_iter().collect();
        for pair in ports.chunks(2) {
            cluster.nodes.push(Node { port: pair[0], bus: pair[1], child: None });
            let child = cluster.spawn(pair[0]);
            cluster.nodes.last_mut().expect("pushed").child = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &cluster.nodes {
            while cli(node.port, &["PING"]).trim() != "PONG" {
                assert!(Instant::now() < deadline, "cluster node {} did not start", node.port);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        cluster.wait_ok(Duration::from_secs(20));
        cluster
    }

    /// A node under its watchdog (see the module doc).
    fn spawn(&self, port: u16) -> Child {
        let bus = self.nodes.iter().find(|n| n.port == port).map_or_else(free_port, |n| n.bus);
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("node dir");
        // A node that dies by itself (a test's crash) keeps its data for `restart`.
        let watched = r#"redis-server "$@" & s=$!
trap 'kill $s 2>/dev/null; wait $s; rm -rf "$DIR"; rmdir "${DIR%/*}" 2>/dev/null; exit 0' TERM
while kill -0 "$OWNER" 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done
kill -0 "$OWNER" 2>/dev/null && exit 0
kill $s 2>/dev/null; wait $s; rm -rf "$DIR"; rmdir "${DIR%/*}" 2>/dev/null"#;
        Command::new("sh")
            .args(["-c", watched, "redis-node"])
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--cluster-port", &bus.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .env("OWNER", std::process::id().to_string())
            .env("DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh and redis-server must be installed (scripts/test installs them)")
    }

    /// Waits until every running node says `cluster_state:ok` and knows three masters with
    /// slots, and every replica's link to its master is up (a replica that has not synced yet
    /// holds nothing a failover could keep).
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                let replication = cli(n.port, &["INFO", "replication"]);
                cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && self.masters_seen_by(n.port).len() == 3
                    && (replication.contains("role:master") || replication.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The masters holding slots, as node `port` sees them.
    fn masters_seen_by(&self, port: u16) -> Vec<u16> {
        cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter(|l| l.split(' ').nth(2).is_some_and(|flags| flags.contains("master") && !flags.contains("fail")))
            .filter(|l| l.split(' ').count() > 8)
            .filter_map(|l| l.split(' ').nth(1)?.split('@').next()?.rsplit(':').next()?.parse().ok())
            .collect()
    }

    /// `redis+cluster://` with every node's address.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// The port of the master that owns `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        self.owner(key).unwrap_or_else(|| panic!("no live master owns the slot of {key}"))
    }

    /// The port of the master that owns `key`'s slot now, if one not marked failing does (none
    /// while a failed master's replica is not promoted yet).
    pub fn owner(&self, key: &str) -> Option<u16> {
        let live = self.nodes.iter().find(|n| n.child.is_some()).expect("a live node").port;
        let slot: u16 = cli(live, &["CLUSTER", "KEYSLOT", key]).trim().parse().expect("a slot");
        for line in cli(live, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b),
                None => range.parse::<u16>().is_ok_and(|s| s == slot),
            });
            if owns {
                return fields[1].split('@').next().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// Kills node `port` (`SIGKILL`: what it had not sent its replica yet is gone, as in a
    /// crash; `SHUTDOWN` would first let its replicas catch up): a master's replica takes over
    /// after the node timeout.
    pub fn crash(&mut self, port: u16) {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap_or_else(|| panic!("{port} is not a node of {ports:?}"));
        let info = cli(port, &["INFO", "server"]);
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).expect("process_id").trim().to_owned();
        let status = Command::new("kill").args(["-KILL", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -KILL {pid} failed");
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts crashed node `port` again on its data: it rejoins as a replica of the master
    /// that took its place.
    pub fn restart(&mut self, port: u16) {
        let child = self.spawn(port);
        self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster").child = Some(child);
    }

    /// The ports of the nodes still running.
    pub fn running(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.port).collect()
    }

    /// Keys matching `pattern` on every running node (each master holds its slots' keys).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for port in self.running() {
            keys.extend(cli(port, &["--scan", "--pattern", pattern]).lines().map(str::to_owned));
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                crate::sigterm(&child);
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
