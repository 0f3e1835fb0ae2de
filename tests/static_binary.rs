//! The binary as it ships: the static musl builds, run with nothing around them, and the
//! container files that package them.
//!
//! - Both builds are static ELF files for the right machine: no program interpreter, no
//!   shared library needed, no symbol table left.
//! - x86_64 in an empty root (a folder that holds only the binary, and the `/data` folder a
//!   volume would give), entered with `chroot` as user 10001 like the image's `USER`: it serves
//!   `/healthz`, reaches the real broker by IP address, takes an order and shows it; its
//!   `healthcheck` subcommand, run in the same root with the image's environment, answers 0;
//!   on SIGTERM it stops cleanly and its store is in `/data`, written as that user.
//!   A broker *name* resolves through `/etc/hosts`, which Docker writes into every container;
//!   without one the server still serves, and `/readyz` answers 503 with the reason.
//! - aarch64 under `qemu-aarch64-static`: `--version`, then the same smoke test.
//! - `compose/Dockerfile`, its ignore file and `compose/compose.yaml` hold what the image and
//!   the stack rely on. No Docker engine runs here: they are read and cross-checked against the
//!   binary's real flags, not run.
//!
//! Where the binaries come from: `SHOPSTREAM_STATIC_X86_64` and `SHOPSTREAM_STATIC_AARCH64`
//! name them (compose/test sets both by running compose/static-builds first). When one is unset,
//! the test runs `compose/static-builds <arch>` itself: slow (release builds with LTO take
//! minutes), but never a silent pass. The empty-root tests need root (chroot) and fail saying
//! so otherwise; the ARM test needs `qemu-aarch64-static` (Debian's qemu-user-static, which
//! compose/test installs).

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use support::{Server, http, repo_root, run_with_stdin};
use yaml_rust2::{Yaml, YamlLoader};

/// The image's user (compose/Dockerfile `USER`); the empty-root runs use it too.
const IMAGE_UID: u32 = 10001;
/// Bounds for the emulated ARM binary: qemu-user is several times slower than native.
const QEMU_WITHIN: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Arch::X86_64 => "SHOPSTREAM_STATIC_X86_64",
            Arch::Aarch64 => "SHOPSTREAM_STATIC_AARCH64",
        }
    }

    /// ELF `e_machine`.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }
}

/// The static release binary for `arch`: the one named by its environment variable, else one
/// built now with compose/static-builds (once per test binary).
fn static_binary(arch: Arch) -> PathBuf {
    static X86_64: OnceLock<PathBuf> = OnceLock::new();
    static AARCH64: OnceLock<PathBuf> = OnceLock::new();
    let cell = match arch {
        Arch::X86_64 => &X86_64,
        Arch::Aarch64 => &AARCH64,
    };
    cell.get_or_init(|| {
        let var = arch.env_var();
        if let Ok(path) = std::env::var(var)
            && !path.trim().is_empty()
        {
            let path = PathBuf::from(path.trim());
            assert!(path.is_file(), "{var}={} is not a file", path.display());
            return path;
        }
        eprintln!(
            "{var} is not set: building the {} binary with compose/static-builds (a release \
             build with LTO: minutes; compose/test builds it beforehand)",
            arch.name()
        );
        let output = Command::new(repo_root().join("compose/static-builds"))
            .arg(arch.name())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cannot run compose/static-builds");
        assert!(
            output.status.success(),
            "compose/static-builds {} failed ({})",
            arch.name(),
            output.status
        );
        let prefix = format!("export {var}=");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("compose/static-builds printed no {var}:\n{stdout}"));
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{} was not built", path.display());
        path
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// The ELF files

/// What the ELF headers say about linking.
#[derive(Debug)]
struct ElfFacts {
    machine: u16,
    /// A `PT_INTERP` segment: the file needs a dynamic loader (ld.so) to start.
    interpreter: bool,
    /// `DT_NEEDED` entries: shared libraries it needs.
    needed_libraries: usize,
    /// A `SHT_SYMTAB` section: symbols were not stripped.
    symbol_table: bool,
}

/// Reads the facts from a 64-bit little-endian ELF file (both our targets are).
fn elf_facts(bytes: &[u8]) -> Result<ElfFacts, String> {
    let u16_at = |at: usize| -> Result<u16, String> {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("truncated at {at}"))
    };
    let u32_at = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("truncated at {at}"))
    };
    let u64_at = |at: usize| -> Result<u64, String> {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("truncated at {at}"))
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let machine = u16_at(18)?;
    let (phoff, phentsize, phnum) = (u64_at(32)? as usize, u16_at(54)? as usize, u16_at(56)?);
    let (shoff, shentsize, shnum) = (u64_at(40)? as usize, u16_at(58)? as usize, u16_at(60)?);

    let mut interpreter = false;
    let mut needed_libraries = 0;
    for i in 0..phnum as usize {
        let header = phoff + i * phentsize;
        match u32_at(header)? {
            3 => interpreter = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC (a static PIE has one, for its own relocations): count DT_NEEDED.
                let (offset, size) = (u64_at(header + 8)? as usize, u64_at(header + 32)? as usize);
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry)? {
                        0 => break,                 // DT_NULL
                        1 => needed_libraries += 1, // DT_NEEDED
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut symbol_table = false;
    for i in 0..shnum as usize {
        if u32_at(shoff + i * shentsize + 4)? == 2 {
            symbol_table = true; // SHT_SYMTAB
        }
    }
    Ok(ElfFacts {
        machine,
        interpreter,
        needed_libraries,
        symbol_table,
    })
}

#[test]
fn both_builds_are_static_stripped_elf_files_for_their_machine() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let path = static_binary(arch);
        let bytes = std::fs::read(&path).unwrap();
        let facts = elf_facts(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{}: {} bytes, {facts:?}", path.display(), bytes.len());
        assert_eq!(
            facts.machine,
            arch.elf_machine(),
            "{}: wrong machine",
            path.display()
        );
        assert!(
            !facts.interpreter,
            "{} needs a dynamic loader",
            path.display()
        );
        assert_eq!(
            facts.needed_libraries,
            0,
            "{} needs shared libraries",
            path.display()
        );
        assert!(!facts.symbol_table, "{} is not stripped", path.display());
        // file(1), where installed, agrees ("statically linked" or "static-pie linked").
        if let Ok(out) = Command::new("file").arg("-b").arg(&path).output()
            && out.status.success()
        {
            let says = String::from_utf8_lossy(&out.stdout);
            assert!(says.contains("static"), "file(1) says: {says}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x86_64 in an empty root

/// Fails (never skips) unless we are root: entering a root with chroot needs it.
fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    assert_eq!(
        euid,
        Some("0"),
        "the empty-root tests enter a folder with chroot, which needs root: run them as root \
         (CI does), e.g. `sudo -E compose/test static_binary`"
    );
}

fn chroot_program() -> &'static str {
    [
        "/usr/sbin/chroot",
        "/usr/bin/chroot",
        "/sbin/chroot",
        "/bin/chroot",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("chroot (coreutils) not found")
}

/// A fresh folder holding only `/shopstream` (a copy of `binary`) and an empty `/data` owned
/// by the image's user, as a named volume on the image would be.
fn empty_root(test: &str, binary: &Path) -> PathBuf {
    let root = std::env::temp_dir().join(support::unique_name(test));
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = root.join("shopstream");
    // A hard link where the file system allows one: a copy is open for writing while it is
    // made, and a child that another test forks meanwhile holds that descriptor until its own
    // exec, so that starting the copy could fail with "Text file busy".
    if std::fs::hard_link(binary, &copy).is_err() {
        std::fs::copy(binary, &copy).unwrap();
    }
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.join("data")).unwrap();
    std::os::unix::fs::chown(root.join("data"), Some(IMAGE_UID), Some(IMAGE_UID)).unwrap();
    root
}

/// `/shopstream` inside `root`, as user 10001, with an empty environment: nothing from this
/// machine reaches it but the network namespace (shared, so 127.0.0.1 is the broker's).
fn in_root(root: &Path) -> Command {
    let mut command = Command::new(chroot_program());
    command
        .arg(format!("--userspec={IMAGE_UID}:{IMAGE_UID}"))
        .arg(root)
        .arg("/shopstream")
        .env_clear();
    command
}

/// The shared broker's address, as an IP (a name is resolved here, on the host).
fn broker_addr() -> SocketAddr {
    let bootstrap = support::bootstrap();
    let first = bootstrap.split(',').next().unwrap().trim().to_string();
    let addrs: Vec<SocketAddr> = first
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve the broker {first}: {e}"))
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .unwrap_or_else(|| panic!("the broker {first} resolves to nothing"))
}

/// The server flags of every run here: the broker, a free port on loopback (read back from the
/// `listening` log line), JSON logs, the data folder and a topic prefix of its own.
fn server_args(command: &mut Command, kafka: &str, data_dir: &str, test: &str) {
    let prefix = format!("{}.", support::unique_name(test));
    command
        .args([
            "--kafka",
            kafka,
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .args(["--data-dir", data_dir, "--topic-prefix", &prefix])
        .env("RUST_LOG", "info");
}

fn start_in_root(root: &Path, kafka: &str, test: &str, extra: &[&str]) -> Server {
    let mut command = in_root(root);
    server_args(&mut command, kafka, "/data", test);
    command.args(extra);
    Server::spawn(command, root.to_path_buf(), Duration::from_secs(30))
}

/// The smoke test: alive, ready on the real broker, an order created through Kafka and shown.
async fn order_round_trip(server: &Server, ready_within: Duration) {
    let (status, body) = http::get(server.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200, "/healthz: {body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    server.wait_ready(ready_within).await;

    let (status, created) =
        http::request(server.addr, "POST", "/api/orders/create?wait=true", None)
            .await
            .unwrap();
    assert_eq!(status, 201, "POST /api/orders/create?wait=true: {created}");
    let order_id = created["order"]["order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no order id in {created}"))
        .to_string();
    assert!(created["kafka"]["offset"].is_number(), "{created}");

    let (status, shown) = http::get(server.addr, &format!("/api/orders/{order_id}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "GET /api/orders/{order_id}: {shown}");
    assert_eq!(shown["order"]["order_id"], order_id.as_str(), "{shown}");
}

fn run(command: &mut Command, within: Duration) -> Output {
    run_with_stdin(command, b"", within).unwrap_or_else(|e| panic!("{e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn x86_64_binary_runs_alone_in_an_empty_root() {
    require_root();
    let binary = static_binary(Arch::X86_64);
    let root = empty_root("emptyroot", &binary);
    let mut server = start_in_root(&root, &broker_addr().to_string(), "emptyroot", &[]);
    order_round_trip(&server, Duration::from_secs(60)).await;

    // The image's health check, as Docker runs it: `/shopstream healthcheck` in the same root
    // with the image's ENV, the listen address wildcard standing for loopback.
    let image_env = format!("0.0.0.0:{}", server.addr.port());
    let out = run(
        in_root(&root)
            .env("SHOPSTREAM_LISTEN", &image_env)
            .env("SHOPSTREAM_DATA_DIR", "/data")
            .arg("healthcheck"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "healthcheck: {out:?}");
    assert!(stdout(&out).contains("200"), "{}", stdout(&out));

    // Readiness too, through --url.
    let out = run(
        in_root(&root).args(["healthcheck", "--url", &server.url("/readyz")]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "healthcheck --url /readyz: {out:?}");

    // Nothing listening: exit 1 and one line saying why.
    let nobody = format!("http://127.0.0.1:{}/healthz", support::free_port());
    let out = run(
        in_root(&root).args(["healthcheck", "--timeout", "2s", "--url", &nobody]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let reason = stderr(&out);
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(reason.contains("cannot connect"), "{reason}");

    // SIGTERM: a clean stop that leaves the store in /data, written as the image's
    // non-root user. The server needed nothing else in its root.
    let status = server.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "stopped with {status}; logs:\n{}",
        server.logs()
    );
    let saved: Vec<std::fs::Metadata> = std::fs::read_dir(root.join("data"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .collect();
    assert!(
        !saved.is_empty(),
        "no store in /data; logs:\n{}",
        server.logs()
    );
    assert!(
        saved.iter().all(|m| m.uid() == IMAGE_UID),
        "files in /data not owned by {IMAGE_UID}"
    );
    let mut entries: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["data", "shopstream"]);
}

#[tokio::test]
async fn a_broker_name_resolves_through_etc_hosts_like_in_a_container() {
    require_root();
    let binary = static_binary(Arch::X86_64);
    let broker = broker_addr();
    let by_name = format!("kafka-broker:{}", broker.port());

    // Docker writes /etc/hosts (and /etc/resolv.conf) into every container; musl's resolver
    // reads them. Here only /etc/hosts, naming the broker.
    let root = empty_root("etchosts", &binary);
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        format!("127.0.0.1 localhost\n{} kafka-broker\n", broker.ip()),
    )
    .unwrap();
    let server = start_in_root(&root, &by_name, "etchosts", &[]);
    order_round_trip(&server, Duration::from_secs(60)).await;
    drop(server);

    // No /etc at all: the name cannot resolve. musl then asks a DNS server on 127.0.0.1:53
    // (its default without /etc/resolv.conf) and waits for an answer that never comes, so the
    // connect attempt ends at its deadline. The server still serves, is not ready, says why
    // on /readyz once the first attempt failed (every request here is bounded, so none may
    // hang), keeps retrying and keeps running.
    let root = empty_root("nohosts", &binary);
    let mut server = start_in_root(&root, &by_name, "nohosts", &["--kafka-timeout", "2s"]);
    let (status, _) = http::get(server.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    // /readyz says only that it is not connected (never where, nor the error text): the
    // failed attempt itself shows in the log.
    let reason = support::eventually(
        "a /readyz 503 once the connection attempt failed",
        Duration::from_secs(30),
        || async {
            let (status, body) = http::get(server.addr, "/readyz").await?;
            let message = body["error"]["message"].as_str().unwrap_or_default();
            if status == 503
                && message.contains("not connected to Kafka")
                && server.logs().contains("cannot connect to Kafka")
            {
                Ok(message.to_string())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    eprintln!("/readyz without /etc/hosts: {reason}");
    let out = run(
        in_root(&root).args(["healthcheck", "--url", &server.url("/readyz")]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("503") && stderr(&out).trim().lines().count() == 1,
        "{}",
        stderr(&out)
    );
    assert!(server.exit_status().is_none(), "the server stopped");
    let (status, _) = http::get(server.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200, "still serving");
}

// ---------------------------------------------------------------------------------------------
// aarch64 under qemu-user

fn qemu_aarch64() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("qemu-aarch64-static"))
        .find(|p| p.is_file())
        .expect(
            "qemu-aarch64-static not found: install Debian's qemu-user-static \
             (compose/test does, as root)",
        )
}

#[tokio::test]
async fn aarch64_binary_runs_under_qemu_against_the_real_broker() {
    let qemu = qemu_aarch64();
    let binary = static_binary(Arch::Aarch64);

    let started = Instant::now();
    let out = run(
        Command::new(&qemu).arg(&binary).arg("--version"),
        QEMU_WITHIN,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out).trim(),
        format!("shopstream {}", env!("CARGO_PKG_VERSION"))
    );
    eprintln!("--version under qemu: {:?}", started.elapsed());

    let data = std::env::temp_dir().join(support::unique_name("qemu-data"));
    let mut command = Command::new(&qemu);
    command.arg(&binary);
    server_args(
        &mut command,
        &broker_addr().to_string(),
        data.to_str().unwrap(),
        "qemu",
    );
    let server = Server::spawn(command, data, QEMU_WITHIN);
    order_round_trip(&server, QEMU_WITHIN).await;

    let out = run(
        Command::new(&qemu)
            .arg(&binary)
            .args(["healthcheck", "--url", &server.url("/healthz")]),
        QEMU_WITHIN,
    );
    assert!(out.status.success(), "healthcheck under qemu: {out:?}");
}

// ---------------------------------------------------------------------------------------------
// The container files

/// Every environment variable the binary reads (server flags and subcommand options).
fn known_env_vars() -> Vec<String> {
    fn collect(command: &clap::Command, into: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                into.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, into);
        }
    }
    let mut vars: Vec<String> = shopstream::config::ENV_ONLY
        .iter()
        .map(|v| v.to_string())
        .collect();
    collect(&shopstream::config::Cli::command(), &mut vars);
    vars
}

/// Dockerfile instructions: (keyword, rest), continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                instructions.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    instructions
}

#[test]
fn dockerfile_builds_a_scratch_image_around_the_static_binary() {
    let text = std::fs::read_to_string(repo_root().join("compose/Dockerfile")).unwrap();
    let instructions = dockerfile_instructions(&text);
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new(); // (base, instructions)
    let mut names: Vec<String> = Vec::new();
    let mut before_first_from = Vec::new();
    for (keyword, rest) in instructions {
        match keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                match words.as_slice() {
                    [_] => names.push(String::new()),
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        names.push(name.to_string())
                    }
                    _ => panic!("FROM {rest}: expected `FROM base [AS name]`"),
                }
                stages.push((words[0].to_string(), Vec::new()));
            }
            "RUN" | "ADD" | "SHELL" => panic!("{keyword} in a scratch image: there is no shell"),
            _ => match stages.last_mut() {
                Some((_, body)) => body.push((keyword, rest)),
                None => before_first_from.push((keyword, rest)),
            },
        }
    }
    assert!(
        before_first_from.contains(&("ARG".into(), "TARGETARCH".into())),
        "ARG TARGETARCH must come before the first FROM (it picks the stage)"
    );

    // The per-architecture stages: FROM scratch, the static binary of that architecture.
    let triple = |docker_arch: &str| match docker_arch {
        "amd64" => "x86_64-unknown-linux-musl",
        "arm64" => "aarch64-unknown-linux-musl",
        other => panic!("unexpected architecture {other}"),
    };
    let (final_base, final_body) = stages.last().expect("no FROM").clone();
    let mut copied = Vec::new();
    for docker_arch in ["amd64", "arm64"] {
        let stage_name = final_base.replace("${TARGETARCH}", docker_arch);
        let index = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(&stage_name))
            .unwrap_or_else(|| panic!("no stage {stage_name} for TARGETARCH={docker_arch}"));
        let (base, body) = &stages[index];
        assert_eq!(base, "scratch", "stage {stage_name} is not FROM scratch");
        let source = format!("target/{}/release/shopstream", triple(docker_arch));
        assert!(
            body.contains(&("COPY".into(), format!("{source} /shopstream"))),
            "stage {stage_name} must COPY {source} /shopstream: {body:?}"
        );
        copied.push(source);
    }
    assert!(
        final_base.contains("${TARGETARCH}"),
        "the final stage must pick the architecture"
    );

    let one = |keyword: &str| -> String {
        let found: Vec<&String> = final_body
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one {keyword} in the final stage: {found:?}"
        );
        found[0].clone()
    };
    let exec_form = |json: &str| -> Vec<String> {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not exec (JSON) form: {json}: {e}"))
    };

    // A numeric non-root user (no /etc/passwd in the image).
    let user = one("USER");
    let ids: Vec<u32> = user
        .split(':')
        .map(|id| id.parse().expect("numeric USER"))
        .collect();
    assert!(ids.iter().all(|&id| id == IMAGE_UID), "USER {user}");
    // /data created after USER, so it belongs to that user and a new volume inherits it.
    let position = |keyword: &str| final_body.iter().position(|(k, _)| k == keyword).unwrap();
    assert_eq!(one("WORKDIR"), "/data");
    assert!(
        position("USER") < position("WORKDIR"),
        "WORKDIR /data must follow USER"
    );
    assert_eq!(one("VOLUME"), "/data");

    // ENV: variables the binary reads, pointing at the volume and a port that is exposed.
    let env: Vec<(String, String)> = one("ENV")
        .split_whitespace()
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV key=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let known = known_env_vars();
    for (key, _) in &env {
        assert!(
            known.contains(key),
            "ENV {key}: the binary reads no such variable"
        );
    }
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(value("SHOPSTREAM_DATA_DIR").as_deref(), Some("/data"));
    let listen: SocketAddr = value("SHOPSTREAM_LISTEN")
        .expect("ENV SHOPSTREAM_LISTEN")
        .parse()
        .unwrap();
    assert!(
        listen.ip().is_unspecified(),
        "must listen on every interface in a container"
    );
    assert_eq!(one("EXPOSE"), listen.port().to_string());

    // The health check and entry point are the binary itself, and the subcommand exists.
    let healthcheck = one("HEALTHCHECK");
    let (_, command) = healthcheck
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    let command = exec_form(command.trim());
    assert_eq!(command, ["/shopstream", "healthcheck"]);
    let parsed = shopstream::config::Cli::try_parse_from(&command).unwrap();
    assert!(matches!(
        parsed.command,
        Some(shopstream::config::CliCommand::Healthcheck(_))
    ));
    assert_eq!(exec_form(&one("ENTRYPOINT")), ["/shopstream"]);

    // The build context (the repository root) is cut down to exactly what is copied.
    let ignore =
        std::fs::read_to_string(repo_root().join("compose/Dockerfile.dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        "the ignore file should start by excluding everything"
    );
    for source in copied {
        assert!(
            rules.contains(&format!("!{source}").as_str()),
            "{source} is not let into the build context"
        );
    }
}

/// A YAML scalar as the string compose would pass on (environment values may be numbers).
fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_vec()
        .map(|v| v.iter().filter_map(scalar).collect())
        .unwrap_or_default()
}

/// A service's `environment` mapping (the form this file uses).
fn environment(service: &Yaml) -> Vec<(String, String)> {
    let hash = service["environment"]
        .as_hash()
        .expect("environment as a mapping");
    hash.iter()
        .map(|(k, v)| (scalar(k).unwrap(), scalar(v).unwrap_or_default()))
        .collect()
}

fn env_value(service: &Yaml, key: &str) -> Option<String> {
    environment(service)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// A KRaft cluster id: 16 bytes in base64url without padding (22 characters, the last one
/// carrying no bits past the 128th), as `kafka-storage.sh random-uuid` prints.
fn valid_cluster_id(id: &str) -> bool {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    id.len() == 22
        && id.chars().all(|c| ALPHABET.contains(c))
        && ALPHABET
            .find(id.chars().last().unwrap())
            .is_some_and(|last| last % 16 == 0)
}

#[test]
fn compose_file_wires_kafka_kraft_and_shopstream() {
    let path = repo_root().join("compose/compose.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    let services = doc["services"].as_hash().expect("services");
    let service = |name: &str| -> &Yaml {
        services
            .get(&Yaml::String(name.into()))
            .unwrap_or_else(|| panic!("no service {name}"))
    };
    let profiles = |name: &str| strings(&service(name)["profiles"]);

    // Brokers: the official image, 4.1, KRaft with every node both broker and controller, the
    // quorum naming exactly the nodes of its group, each advertising its own service name.
    let single = ["kafka"];
    let cluster = ["kafka-1", "kafka-2", "kafka-3"];
    let mut kafka_volumes = std::collections::HashSet::new();
    for (group, replication, min_isr) in [(&single[..], "1", "1"), (&cluster[..], "3", "2")] {
        let mut expected_voters = Vec::new();
        for name in group {
            let broker = service(name);
            let image = broker["image"].as_str().unwrap();
            assert!(
                image.starts_with("apache/kafka:4.1."),
                "{name}: image {image}"
            );
            let get =
                |key: &str| env_value(broker, key).unwrap_or_else(|| panic!("{name}: no {key}"));
            assert_eq!(get("KAFKA_PROCESS_ROLES"), "broker,controller", "{name}");
            assert_eq!(
                get("KAFKA_ADVERTISED_LISTENERS"),
                format!("PLAINTEXT://{name}:9092")
            );
            assert!(
                get("KAFKA_LISTENERS").contains("CONTROLLER://:9093"),
                "{name}"
            );
            assert_eq!(get("KAFKA_CONTROLLER_LISTENER_NAMES"), "CONTROLLER");
            assert_eq!(
                get("KAFKA_DEFAULT_REPLICATION_FACTOR"),
                replication,
                "{name}"
            );
            assert_eq!(
                get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"),
                replication,
                "{name}"
            );
            assert_eq!(
                get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"),
                replication
            );
            assert_eq!(get("KAFKA_MIN_INSYNC_REPLICAS"), min_isr, "{name}");
            expected_voters.push(format!("{}@{name}:9093", get("KAFKA_NODE_ID")));
            let test = strings(&broker["healthcheck"]["test"]).join(" ");
            assert!(
                test.contains("/opt/kafka/bin/kafka-broker-api-versions.sh")
                    && test.contains("--bootstrap-server localhost:9092"),
                "{name}: health check {test}"
            );
            // Its log in a named volume of its own, where the image's user may write
            // (/var/lib/kafka/data; the image's default log dir is under /tmp, in the
            // container), so that `down` then `up` keeps the log shopstream's offsets point
            // into; and a fixed cluster id, so that the next container finds the formatted log.
            let log_dirs = get("KAFKA_LOG_DIRS");
            assert_eq!(log_dirs, "/var/lib/kafka/data", "{name}");
            let mounts = strings(&broker["volumes"]);
            assert_eq!(mounts.len(), 1, "{name}: {mounts:?}");
            let (volume, target) = mounts[0].split_once(':').unwrap();
            assert_eq!(target, log_dirs, "{name}");
            assert!(
                doc["volumes"]
                    .as_hash()
                    .expect("top-level volumes")
                    .contains_key(&Yaml::String(volume.into())),
                "{name}: volume {volume} is not declared"
            );
            assert!(
                kafka_volumes.insert(volume.to_string()),
                "{name} shares its volume {volume}"
            );
            assert!(valid_cluster_id(&get("CLUSTER_ID")), "{name}");
        }
        for name in group {
            assert_eq!(
                env_value(service(name), "KAFKA_CONTROLLER_QUORUM_VOTERS").unwrap(),
                expected_voters.join(","),
                "{name}"
            );
        }
    }
    // The three nodes form one cluster: one id.
    let ids: Vec<String> = cluster
        .iter()
        .map(|n| env_value(service(n), "CLUSTER_ID").unwrap())
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    for name in cluster.iter().chain(["shopstream-cluster"].iter()) {
        assert_eq!(profiles(name), ["cluster"], "{name}");
    }
    assert!(profiles("kafka").is_empty() && profiles("shopstream").is_empty());

    // shopstream: built from compose/Dockerfile, started once its brokers are healthy, pointed
    // at them, its /data in a named volume, only variables the binary reads.
    let known = known_env_vars();
    let mut groups = std::collections::HashSet::new();
    let volumes = doc["volumes"].as_hash().expect("top-level volumes");
    for (name, brokers, replication, port) in [
        ("shopstream", &single[..], "1", "8080"),
        ("shopstream-cluster", &cluster[..], "3", "8081"),
    ] {
        let app = service(name);
        assert_eq!(app["build"]["context"].as_str(), Some(".."), "{name}");
        assert_eq!(
            app["build"]["dockerfile"].as_str(),
            Some("compose/Dockerfile"),
            "{name}"
        );
        assert!(
            path.parent()
                .unwrap()
                .join("../compose/Dockerfile")
                .is_file()
        );
        for broker in brokers {
            assert_eq!(
                app["depends_on"][*broker]["condition"].as_str(),
                Some("service_healthy"),
                "{name} must wait for {broker}"
            );
        }
        let expected: Vec<String> = brokers.iter().map(|b| format!("{b}:9092")).collect();
        assert_eq!(
            env_value(app, "SHOPSTREAM_KAFKA"),
            Some(expected.join(",")),
            "{name}"
        );
        assert_eq!(
            env_value(app, "SHOPSTREAM_REPLICATION_FACTOR").as_deref(),
            Some(replication)
        );
        for (key, _) in environment(app) {
            assert!(known.contains(&key), "{name}: the binary reads no {key}");
        }
        // A container's host name changes with every new container: the consumer group
        // Kafka's tools show is named, once per instance.
        let group = env_value(app, "SHOPSTREAM_CONSUMER_GROUP")
            .unwrap_or_else(|| panic!("{name}: no SHOPSTREAM_CONSUMER_GROUP"));
        assert!(
            groups.insert(group.clone()),
            "{name} shares the group {group}"
        );
        assert_eq!(strings(&app["ports"]), [format!("{port}:8080")], "{name}");
        let mounts = strings(&app["volumes"]);
        assert_eq!(mounts.len(), 1, "{name}: {mounts:?}");
        let (volume, target) = mounts[0].split_once(':').unwrap();
        assert_eq!(target, "/data", "{name}");
        assert!(
            volumes.contains_key(&Yaml::String(volume.into())),
            "{name}: volume {volume} is not declared"
        );
    }
}
