//! Servers of a test's own, on free loopback ports with data directories of their own, stopped
//! when dropped: restart and connection-kill tests use them so the shared services are never
//! disturbed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{fastrand_u32, sigterm};

/// A server of a test's own that chaos scenarios restart and cut connections on. Each fault is
/// the server's own admin command (`redis-cli`, `pg_ctl`/`psql`, `mariadb-admin`/`mariadb`,
/// `rabbitmqctl`).
pub trait OwnServer {
    /// Creates the server and starts it.
    fn start() -> Self;

    /// The URL clients connect to.
    fn url(&self) -> String;

    /// Stops the server with its data kept, waits `down_for`, and starts it again on the same
    /// port and data.
    fn restart(&mut self, down_for: Duration);

    /// Closes every client connection but the admin command's own; returns how many it closed.
    fn kill_connections(&self) -> u64;
}

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// Runs `cmd`, asserting it succeeds, and returns its standard output.
fn output(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e} (scripts/test installs the servers' tools)"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `redis-server` of a test's own on a free loopback port, with append-only persistence
/// (fsync on every write), stopped when dropped. Restart and connection-kill tests use it so
/// the shared server is never disturbed.
pub struct OwnRedis {
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnServer for OwnRedis {
    fn start() -> Self {
        let mut server = Self { port: free_port(), dir: tempfile::tempdir().expect("data dir"), child: None };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (it finishes its append-only file), then the server again.
    fn restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }

    /// `CLIENT KILL TYPE normal`.
    fn kill_connections(&self) -> u64 {
        let out = output(Command::new("redis-cli").args(["-p", &self.port.to_string(), "CLIENT", "KILL", "TYPE", "normal"]), "CLIENT KILL");
        out.trim().parse().unwrap_or_else(|_| panic!("CLIENT KILL answered {out:?}"))
    }
}

impl OwnRedis {
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "own redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM), keeping its port and data for [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            sigterm(&child);
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RabbitMQ node of a test's own (`rabbitmq-server` with its own node name, free loopback
/// ports and data directory), stopped when dropped, so restart and connection tests never
/// disturb the shared broker.
pub struct OwnRabbit {
    /// The AMQP port.
    pub port: u16,
    node: String,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnServer for OwnRabbit {
    /// Starts a node and waits until it accepts connections (~5-10 s).
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("asynctasq-rabbit-{}-{:08x}", std::process::id(), fastrand_u32()));
        std::fs::create_dir_all(dir.join("mnesia")).expect("node dir");
        std::fs::create_dir_all(dir.join("log")).expect("node dir");
        // The Debian wrapper runs the node as the `rabbitmq` user when started by root.
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&dir).status();
        let node = format!("asynctasq-test-{}-{:04x}@localhost", std::process::id(), fastrand_u32() & 0xffff);
        let port = free_port();
        let dist = free_port();
        let child = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("plugins"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", dir.join("feature_flags"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("none"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server must be installed (scripts/test installs it)");
        // A node outlives the test process unless stopped: a watchdog of its own stops it and
        // removes its data once the test process is gone, however it ended (a node a test
        // keeps in a `static` is never dropped).
        let watchdog = r#"while kill -0 "$OWNER" 2>/dev/null; do sleep 1; done
rabbitmqctl -q -n "$NODE" stop >/dev/null 2>&1; rm -rf "$DIR""#;
        // `setsid --fork` returns at once, leaving the watchdog detached.
        Command::new("setsid")
            .args(["--fork", "sh", "-c", watchdog])
            .env("OWNER", std::process::id().to_string())
            .env("NODE", &node)
            .env("DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("setsid and sh must be installed");
        let node = Self { port, node, dir, child: Some(child) };
        node.await_startup();
        node
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl stop_app`, a pause, then `start_app`.
    fn restart(&mut self, down_for: Duration) {
        assert!(self.ctl(&["stop_app"]), "stop_app failed");
        std::thread::sleep(down_for);
        assert!(self.ctl(&["start_app"]), "start_app failed");
        self.await_startup();
    }

    /// `rabbitmqctl close_all_connections`.
    fn kill_connections(&self) -> u64 {
        let open = output(Command::new("rabbitmqctl").args(["-q", "-n", &self.node, "list_connections", "pid"]), "list_connections");
        assert!(self.ctl(&["close_all_connections", "asynctasq test: connection loss"]), "close_all_connections failed");
        open.lines().filter(|l| l.trim_start().starts_with('<')).count() as u64
    }
}

impl OwnRabbit {
    fn ctl(&self, args: &[&str]) -> bool {
        Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn await_startup(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !self.ctl(&["await_startup"]) {
            assert!(std::time::Instant::now() < deadline, "own RabbitMQ node {} did not start", self.node);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl OwnRabbit {
    /// The node's name (`name@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `rabbitmqctl -n <this node> args…` succeeded.
    pub fn rabbitmqctl(&self, args: &[&str]) -> bool {
        self.ctl(args)
    }

    /// `rabbitmqctl -n <this node> args…`, its standard output.
    pub fn rabbitmqctl_output(&self, args: &[&str]) -> String {
        output(Command::new("rabbitmqctl").args(["-q", "-n", &self.node]).args(args), "rabbitmqctl")
    }
}

/// Three [`OwnRabbit`] nodes joined into one cluster (the second and third join the first),
/// stopped when dropped.
pub struct OwnRabbitCluster {
    /// The nodes, the first the one the others joined.
    pub nodes: Vec<OwnRabbit>,
}

impl OwnRabbitCluster {
    /// Starts three nodes and joins them (~30 s).
    pub fn start() -> Self {
        let nodes: Vec<OwnRabbit> = (0..3).map(|_| OwnRabbit::start()).collect();
        for node in &nodes[1..] {
            assert!(node.ctl(&["stop_app"]), "stop_app on {}", node.node);
            assert!(node.ctl(&["join_cluster", &nodes[0].node]), "{} joins {}", node.node, nodes[0].node);
            assert!(node.ctl(&["start_app"]), "start_app on {}", node.node);
            node.await_startup();
        }
        let status = nodes[0].rabbitmqctl_output(&["cluster_status", "--formatter", "json"]);
        for node in &nodes {
            assert!(status.contains(&node.node), "{} is in the cluster: {status}", node.node);
        }
        Self { nodes }
    }

    /// `amqp://guest:guest@127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/%2f`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("amqp://guest:guest@{}/%2f", hosts.join(","))
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `program` as the `postgres` user when this process is root (PostgreSQL refuses to run
/// as root), else as this user.
fn as_postgres(program: &str) -> Command {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL cluster of a test's own (`initdb` into a fresh directory, `pg_ctl` on a free
/// loopback port, trust authentication), stopped and deleted when dropped.
pub struct OwnPostgres {
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnServer for OwnPostgres {
    /// Creates the cluster and starts it (~2 s).
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("cluster dir");
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status();
        let status = as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-N", "-D"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("initdb must be installed (PostgreSQL's server binaries)");
        assert!(status.success(), "initdb failed");
        let server = Self { port: free_port(), dir };
        server.pg_ctl("start");
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m fast` (open connections are terminated, data kept), a pause, then
    /// `pg_ctl start`.
    fn restart(&mut self, down_for: Duration) {
        self.pg_ctl("stop");
        std::thread::sleep(down_for);
        self.pg_ctl("start");
    }

    /// `pg_terminate_backend` of every client backend: the workers' pools and LISTEN
    /// connections, and the test's own driver.
    fn kill_connections(&self) -> u64 {
        const SQL: &str = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                           WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'";
        let out = output(Command::new("psql").args(["-Atc", SQL, &self.url()]), "pg_terminate_backend");
        out.trim().parse().unwrap_or_else(|_| panic!("psql answered {out:?}"))
    }
}

impl OwnPostgres {
    fn pg_ctl(&self, action: &str) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let status = as_postgres("pg_ctl")
            .args(["-w", "-m", "fast", "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg(action)
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl must be installed");
        assert!(status.success(), "pg_ctl {action} failed");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A MariaDB server of a test's own (`mariadb-install-db` into a fresh directory, `mariadbd` on
/// a free loopback port, `root` without a password, database `test`), stopped and deleted when
/// dropped.
pub struct OwnMariaDb {
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnServer for OwnMariaDb {
    /// Creates the data directory and starts the server (~3 s).
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("data dir");
        let status = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"])
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db must be installed");
        assert!(status.success(), "mariadb-install-db failed");
        let mut server = Self { port: free_port(), dir, child: None };
        server.spawn();
        output(&mut server.client(&["-e", "CREATE DATABASE test"]), "create database");
        server
    }

    /// `mysql://root@127.0.0.1:<port>/test`.
    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    /// `mariadb-admin shutdown` (a clean stop, data kept), a pause, then the server again.
    fn restart(&mut self, down_for: Duration) {
        assert!(self.admin(&["shutdown"]), "mariadb-admin shutdown failed");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        std::thread::sleep(down_for);
        self.spawn();
    }

    /// `KILL CONNECTION` of every connection but the server's own threads; a connection gone
    /// between the listing and its kill is not counted.
    fn kill_connections(&self) -> u64 {
        let list = "SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID() AND command <> 'Daemon'";
        let ids = output(&mut self.client(&["-N", "-e", list]), "list connections");
        let kills: Vec<String> = ids.split_whitespace().map(|id| format!("KILL CONNECTION {id};")).collect();
        if kills.is_empty() {
            return 0;
        }
        let out = self.client(&["--force", "-e", &kills.join(" ")]).output().expect("mariadb client must be installed");
        let failed = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("ERROR")).count();
        (kills.len() - failed) as u64
    }
}

impl OwnMariaDb {
    /// The `mariadb` client on this server as `root`, with `args`.
    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.args(["-h", "127.0.0.1", "-P", &self.port.to_string(), "-uroot"]).args(args);
        cmd
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("sock")
    }

    fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-log-bin", "--innodb-buffer-pool-size=32M"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", self.dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd must be installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.admin(&["ping"]) {
            assert!(std::time::Instant::now() < deadline, "own mariadbd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn admin(&self, args: &[&str]) -> bool {
        Command::new("mariadb-admin")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("-uroot")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
