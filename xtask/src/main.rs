//! `cargo xtask`: the README's two commands on a fresh machine.
//!
//! ```text
//! cargo xtask demo [ARGS]   install what the build needs, then run `seed demo`
//! cargo xtask test [ARGS]   install what the build and the test services need,
//!                           then run the whole test suite, Ceph and Azurite
//!                           tests required
//! cargo xtask install       install everything both need, and run nothing
//! cargo xtask check         say what is missing, install nothing
//! ```
//!
//! What is missing is installed with apt-get when this runs as root on a
//! machine that has it; otherwise xtask prints the one command that
//! installs it and stops. It has no dependencies, so it builds in seconds,
//! before RocksDB (whose bindings need libclang) is compiled.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// A prerequisite: what it is for, how to tell it is there, and the
/// Debian packages that provide it.
struct Need {
    what: &'static str,
    present: fn() -> bool,
    packages: &'static [&'static str],
}

fn on_path(bin: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {bin} >/dev/null 2>&1")).status().is_ok_and(|s| s.success())
}

fn dpkg_has(package: &str) -> bool {
    Command::new("dpkg").args(["-s", package]).output().is_ok_and(|o| o.status.success())
}

/// libclang for RocksDB's bindgen: the Debian package, or (elsewhere) a
/// `LIBCLANG_PATH` or a libclang the loader knows.
fn libclang() -> bool {
    if std::env::var_os("LIBCLANG_PATH").is_some() || dpkg_has("libclang-dev") {
        return true;
    }
    !on_path("dpkg")
        && Command::new("sh")
            .arg("-c")
            .arg("ldconfig -p 2>/dev/null | grep -q 'libclang\\(-[0-9.]*\\)\\?\\.so'")
            .status()
            .is_ok_and(|s| s.success())
}

/// What compiling tierseed needs: RocksDB's C++ and its Rust bindings.
const BUILD: &[Need] = &[
    Need { what: "clang (RocksDB's bindings)", present: || on_path("clang"), packages: &["clang"] },
    Need { what: "libclang (RocksDB's bindings)", present: libclang, packages: &["libclang-dev"] },
    Need { what: "a C++ compiler (RocksDB)", present: || on_path("c++") || on_path("g++"), packages: &["g++"] },
    // jemalloc's build (the `jemalloc` feature, on with `cli`) runs its
    // configure script and make.
    Need { what: "make (jemalloc, seed's allocator)", present: || on_path("make"), packages: &["make"] },
];

/// What the object-tier tests need: a real Ceph cluster with an S3
/// gateway, started on 127.0.0.1 by the tests (`.ci/ceph.sh`).
const SERVICES: &[Need] = &[
    Need {
        what: "Ceph (the object-tier tests' cluster)",
        present: || ["ceph-mon", "ceph-osd", "radosgw", "ceph"].iter().all(|b| on_path(b)),
        packages: &["ceph-mon", "ceph-osd", "radosgw", "ceph-common"],
    },
    Need {
        what: "python3-boto3 (creates the test bucket)",
        // The system's python3, which `.ci/ceph.sh` runs: a python3
        // earlier on PATH (pyenv, a venv) may have boto3 when it lacks it.
        present: || {
            let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
            Command::new(python).args(["-c", "import boto3"]).output().is_ok_and(|o| o.status.success())
        },
        packages: &["python3-boto3"],
    },
    Need {
        what: "Node.js and npm (Azurite, the Azure tests' emulator)",
        present: || on_path("node") && on_path("npm"),
        packages: &["nodejs", "npm"],
    },
];

/// Azurite itself comes from npm, pinned by `.ci/azurite.sh`, under
/// `~/.cache/tierseed-azurite`.
fn azurite(install: bool) -> Result<(), String> {
    let script = root().join(".ci/azurite.sh");
    let home = std::env::var_os("TIERSEED_AZURITE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/tierseed-azurite")));
    if home.is_some_and(|h| h.join("node_modules/.bin/azurite-blob").exists()) {
        return Ok(());
    }
    if !install {
        return Err(format!("Azurite is missing: install it with: bash {}", script.display()));
    }
    let t = Instant::now();
    eprintln!("xtask: npm install azurite (half a minute)");
    let status = Command::new("bash").arg(&script).arg("install").status().map_err(|e| format!("bash: {e}"))?;
    if !status.success() {
        return Err(format!("bash {} install failed ({status})", script.display()));
    }
    eprintln!("xtask: installed Azurite in {}", elapsed(t));
    Ok(())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ sits in the repository root").to_path_buf()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn elapsed(t: Instant) -> String {
    let s = t.elapsed().as_secs();
    if s >= 60 { format!("{}m {:02}s", s / 60, s % 60) } else { format!("{:.1}s", t.elapsed().as_secs_f64()) }
}

/// Makes sure every need is met: installs what is missing with apt-get
/// where it can, else prints the command and fails.
fn ensure(needs: &[&Need], install: bool) -> Result<(), String> {
    let missing: Vec<&&Need> = needs.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().flat_map(|n| n.packages.iter().copied()).collect();
    for n in &missing {
        eprintln!("xtask: missing {}", n.what);
    }
    let command = format!("apt-get install -y --no-install-recommends {}", packages.join(" "));
    if !install {
        return Err(format!("install them with: sudo {command}"));
    }
    if !is_root() || !on_path("apt-get") {
        return Err(format!(
            "xtask installs them itself only as root on a machine with apt-get; install them with:\n    sudo apt-get update && sudo {command}\nthen run this again"
        ));
    }
    let t = Instant::now();
    eprintln!("xtask: apt-get install {} (a minute or two)", packages.join(" "));
    // apt-get's and dpkg's progress lines go nowhere; their errors (on
    // stderr) still show.
    let apt = |args: &[&str]| -> Result<(), String> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("apt-get: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("apt-get {} failed ({status})", args.join(" "))) }
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&packages);
    apt(&args)?;
    if let Some(n) = missing.iter().find(|n| !(n.present)()) {
        return Err(format!("{} is still missing after installing {}", n.what, packages.join(" ")));
    }
    eprintln!("xtask: installed {} in {}", packages.join(" "), elapsed(t));
    Ok(())
}

/// Runs cargo (the one that runs xtask) in the repository root.
fn cargo(args: &[&str], extra: &[String], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let t = Instant::now();
    eprintln!("xtask: cargo {} {}", args.join(" "), extra.join(" "));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args(args).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    eprintln!("xtask: cargo {} finished in {} ({status})", args.first().copied().unwrap_or(""), elapsed(t));
    if status.success() { Ok(()) } else { Err(format!("cargo {} failed", args.join(" "))) }
}

const USAGE: &str = "usage: cargo xtask <command> [ARGS]

  demo [ARGS]   install what the build needs, then `seed demo` (ARGS go to it)
  test [ARGS]   install what the build and the test services need, then the
                whole suite (`cargo test --release --all-features`, ARGS appended),
                with the Ceph and Azurite tests required, never skipped
  install       install what both need, and run nothing
  check         say what is missing, install nothing

Missing packages are installed with apt-get when xtask runs as root;
otherwise it prints the command that installs them and stops.";

fn run(args: &[String]) -> Result<(), String> {
    let t = Instant::now();
    let (command, rest) = args.split_first().map_or(("help", &[][..]), |(c, r)| (c.as_str(), r));
    let build: Vec<&Need> = BUILD.iter().collect();
    let all: Vec<&Need> = BUILD.iter().chain(SERVICES).collect();
    match command {
        "demo" => {
            ensure(&build, true)?;
            cargo(&["run", "--release", "--features", "cli", "--", "demo"], rest, &[])?;
        }
        "test" => {
            ensure(&all, true)?;
            azurite(true)?;
            cargo(
                &["test", "--release", "--all-features"],
                rest,
                &[("TIERSEED_REQUIRE_CEPH", "1"), ("TIERSEED_REQUIRE_AZURITE", "1")],
            )?;
        }
        "install" => {
            ensure(&all, true)?;
            azurite(true)?;
        }
        "check" => {
            ensure(&all, false)?;
            azurite(false)?;
            eprintln!("xtask: everything the build and the tests need is installed");
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            return Ok(());
        }
        other => return Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
    eprintln!("xtask: {command} done in {}", elapsed(t));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
