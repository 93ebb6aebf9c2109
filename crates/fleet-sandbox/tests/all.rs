//! Real processes under the real helper: the probe worker's every try, Python and Node under
//! the baseline profile, the command sandbox, and the errors that stop a worker from starting.
//!
//! Skipped, with the reason printed, only where the kernel lacks Landlock and
//! `FLEET_SANDBOX_REQUIRE` is not `1` (`.ci/run` sets it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_core::exec::{CommandRequest, CommandSandbox, ExecError};
use fleet_sandbox::{
    SETUP_FAILED, Sandbox, SandboxError, SandboxPolicy, SandboxedCommands, UNPRIVILEGED_ID,
    landlock_available,
};

fn sandbox_or_skip(test: &str) -> Option<Sandbox> {
    if let Err(e) = landlock_available() {
        assert!(
            std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
            "FLEET_SANDBOX_REQUIRE=1 but {e}"
        );
        eprintln!("skipping {test}: {e}");
        return None;
    }
    Some(Sandbox::new(
        env!("CARGO_BIN_EXE_fleet-sandbox-helper"),
        Vec::new(),
    ))
}

/// A place the unprivileged worker can reach: `root` (0755) with `work` (writable by the
/// worker), `out` (readable, with a UNIX socket of someone else's) and `hidden`.
struct Place {
    _dir: tempfile::TempDir,
    root: PathBuf,
    _listener: std::os::unix::net::UnixListener,
    _datagrams: std::os::unix::net::UnixDatagram,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["work", "out", "hidden", "project", "project/workspace"] {
            std::fs::create_dir(root.join(sub)).unwrap();
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        if rustix::process::geteuid().is_root() {
            let id = Some(UNPRIVILEGED_ID);
            std::os::unix::fs::chown(root.join("work"), id, id).unwrap();
            std::os::unix::fs::chown(root.join("project/workspace"), id, id).unwrap();
        }
        std::fs::write(root.join("hidden/secret"), "secret").unwrap();
        std::fs::set_permissions(
            root.join("hidden/secret"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        // Someone else's sockets, world-writable as a desktop bus or a container runtime's
        // often are: only the sandbox stands between the worker and them.
        let listener =
            std::os::unix::net::UnixListener::bind(root.join("out/daemon.sock")).unwrap();
        let datagrams = std::os::unix::net::UnixDatagram::bind(root.join("out/log.sock")).unwrap();
        for socket in ["out/daemon.sock", "out/log.sock"] {
            std::fs::set_permissions(root.join(socket), std::fs::Permissions::from_mode(0o777))
                .unwrap();
        }
        // The worker's binary must be reachable by the unprivileged user wherever the build is.
        std::fs::copy(
            env!("CARGO_BIN_EXE_fleet-sandbox-probe"),
            root.join("probe"),
        )
        .unwrap();
        Self {
            _dir: dir,
            root,
            _listener: listener,
            _datagrams: datagrams,
        }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    fn policy(&self) -> SandboxPolicy {
        SandboxPolicy {
            writable: vec![self.path("work")],
            readable: vec![self.path("out")],
            ..SandboxPolicy::default()
        }
    }

    /// What the probe got through under `policy`, whose writable directory is `writable`,
    /// with `extra` arguments (`--exec-from-memory`).
    fn probe(
        &self,
        sandbox: &Sandbox,
        policy: &SandboxPolicy,
        writable: &Path,
        extra: &[&str],
    ) -> BTreeMap<String, (bool, String)> {
        let mut args = vec![
            "--unix-dgram".into(),
            self.path("out/log.sock"),
            // This test's process: someone else's, as far as the worker is concerned.
            "--other-pid".into(),
            PathBuf::from(std::process::id().to_string()),
            "--writable".into(),
            writable.to_path_buf(),
            "--outside".into(),
            self.path("out"),
            "--hidden".into(),
            self.path("hidden/secret"),
            "--unix".into(),
            self.path("out/daemon.sock"),
            "--exec".into(),
            PathBuf::from("/bin/echo"),
        ];
        args.extend(extra.iter().map(PathBuf::from));
        let out = sandbox
            .command(policy, self.path("probe"), args)
            .unwrap()
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    v["probe"].as_str().unwrap().to_owned(),
                    (
                        v["allowed"].as_bool().unwrap(),
                        v["detail"].as_str().unwrap_or_default().to_owned(),
                    ),
                )
            })
            .collect()
    }
}

/// The sandbox probe matrix: each row one thing a worker tries, each column a policy, each
/// cell whether it gets through. The columns are the switches one at a time and the policies
/// `fleet start` builds for the sample agents in `agents/`; `U` is whether this kernel's
/// Landlock confines UNIX socket paths (ABI 9), which decides the rows that depend on it.
/// `exec_from_memory` is a run of its own (it ends the probe when it works).
///
/// Under learn (which refuses no system call), `unshare` and `keyctl` succeed only where the
/// kernel lets an unprivileged user make a user namespace (`n`) and has keyrings (`k`).
///
/// | columns: | baseline | network | subprocesses | learn | patch-bot | test-writer-bot | doc-bot |
fn matrix(u: bool, n: bool, k: bool) -> Vec<(&'static str, [bool; 7])> {
    const F: bool = false;
    const T: bool = true;
    vec![
        ("privileged", [F, F, F, F, F, F, F]),
        ("write_inside", [T, T, T, T, T, T, T]),
        ("write_outside", [F, F, F, F, F, F, F]),
        ("read_hidden", [F, F, F, F, F, F, F]),
        ("tcp_socket", [F, T, F, T, F, F, F]),
        ("udp_socket", [F, T, F, T, F, F, F]),
        // Refused where Landlock cannot confine them; the learn column logs instead.
        ("unix_socket_inside", [u, u, u, T, u, u, u]),
        ("unix_socket_outside", [F, F, F, !u, F, F, F]),
        ("unix_dgram_outside", [F, F, F, !u, F, F, F]),
        ("proc_self", [T, T, T, T, T, T, T]),
        ("proc_other", [F, F, F, F, F, F, F]),
        ("proc_list", [F, F, F, F, F, F, F]),
        ("proc_1_environ", [F, F, F, F, F, F, F]),
        ("read_etc_shadow", [F, F, F, F, F, F, F]),
        ("mount", [F, F, F, F, F, F, F]),
        ("unshare", [F, F, F, n, F, F, F]),
        ("keyctl", [F, F, F, k, F, F, F]),
        ("setuid_root", [F, F, F, F, F, F, F]),
        ("signal_outside", [F, F, F, F, F, F, F]),
        ("thread", [T, T, T, T, T, T, T]),
        ("fork", [F, F, T, T, T, T, T]),
        ("vfork", [F, F, T, T, T, T, T]),
        ("clone_vfork", [F, F, T, T, T, T, T]),
        // posix_spawn runs /bin/true: Landlock's execute rule still stops it under learn.
        ("posix_spawn", [F, F, T, F, T, T, T]),
        ("ptrace", [F, F, F, T, F, F, F]),
        ("exec", [F, F, T, F, T, T, T]),
        ("exec_from_memory", [F, F, F, T, F, F, F]),
    ]
}

#[test]
fn the_probe_matrix_holds_for_every_switch_and_every_sample_agent() {
    let Some(sandbox) = sandbox_or_skip("the_probe_matrix…") else {
        return;
    };
    let place = Place::new();
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents");
    let project = place.path("project");
    let mut columns: Vec<(String, SandboxPolicy, PathBuf)> = Vec::new();
    let work = place.path("work");
    columns.push(("baseline".into(), place.policy(), work.clone()));
    let mut policy = place.policy();
    policy.network = true;
    columns.push(("network".into(), policy, work.clone()));
    let mut policy = place.policy();
    policy.subprocesses = true;
    columns.push(("subprocesses".into(), policy, work.clone()));
    let mut policy = place.policy();
    policy.learn = true;
    columns.push(("learn".into(), policy, work.clone()));
    for agent in ["patch-bot", "test-writer-bot", "doc-bot"] {
        let spec =
            fleet_core::spec::AgentSpec::load(&agents.join(format!("{agent}.yaml"))).unwrap();
        let policy = SandboxPolicy::from_spec(&spec.sandbox, &project);
        columns.push((agent.into(), policy, project.join("workspace")));
    }
    let u = fleet_sandbox::unix_sockets_confinable();
    let (n, k) = (
        unprivileged_user_namespaces(),
        Path::new("/proc/keys").exists(),
    );
    let rows = matrix(u, n, k);
    let mut wrong = Vec::new();
    for (column, (name, policy, writable)) in columns.iter().enumerate() {
        let mut seen = place.probe(&sandbox, policy, writable, &[]);
        let from_memory = place.probe(&sandbox, policy, writable, &["--exec-from-memory"]);
        seen.insert(
            "exec_from_memory".into(),
            from_memory["exec_from_memory"].clone(),
        );
        for (probe, cells) in &rows {
            match seen.remove(*probe) {
                // Refused by the sandbox, not failing for some other reason: the kernel said
                // EPERM (seccomp, capabilities, Landlock scopes) or EACCES (Landlock paths,
                // file permissions). Learn mode refuses nothing itself, and `privileged` is a
                // uid, not a try.
                Some((false, why))
                    if !cells[column]
                        && name != "learn"
                        && *probe != "privileged"
                        && !(why.contains("os error 1)") || why.contains("os error 13)")) =>
                {
                    wrong.push(format!("{name}: {probe} refused for another reason: {why}"));
                }
                Some((got, _)) if got == cells[column] => {}
                got => wrong.push(format!(
                    "{name}: {probe} expected {}, got {got:?}",
                    cells[column]
                )),
            }
        }
        assert!(
            seen.is_empty(),
            "{name}: probes missing from the matrix: {seen:?}"
        );
        assert!(writable.join("probe.txt").exists(), "{name}");
    }
    assert!(!place.path("out/probe.txt").exists());
    assert!(
        wrong.is_empty(),
        "Landlock confines UNIX sockets: {u}; unprivileged user namespaces: {n}; keyrings: {k}\n{}",
        wrong.join("\n")
    );
}

/// Whether this kernel lets an unprivileged user create a user namespace: not when Debian's
/// `unprivileged_userns_clone` or AppArmor's restriction says no, or no namespace may exist.
fn unprivileged_user_namespaces() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    read("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != "0")
        && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_none_or(|v| v != "1")
        && read("/proc/sys/user/max_user_namespaces").is_none_or(|v| v != "0")
}

fn interpreter_policy(place: &Place) -> SandboxPolicy {
    let mut policy = place.policy();
    policy
        .env
        .push(("HOME".into(), place.path("work").display().to_string()));
    policy
}

/// Runs an interpreter under [`interpreter_policy`]; its stdout, once it exited 0.
fn interpret(sandbox: &Sandbox, place: &Place, program: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = sandbox
        .command(&interpreter_policy(place), program, args)
        .unwrap()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A task with no input.
fn task(id: &str, prompt: &str) -> fleet_core::ipc::TaskRunParams {
    fleet_core::ipc::TaskRunParams {
        task_id: id.into(),
        prompt: prompt.into(),
        input: None,
    }
}

/// Copies the test fixture `name` where the unprivileged worker can read it; the copy's path.
fn fixture_in(place: &Place, name: &str) -> PathBuf {
    let copy = place.path("out").join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        &copy,
    )
    .unwrap();
    copy
}

/// The agent `echo-bot` (with `extra` spec lines) served by the Python fixture worker.
fn python_plan(place: &Place, extra: &str) -> fleet_sandbox::WorkerPlan {
    let yaml = format!("name: echo-bot\nrole: echoes\nmodel: claude-haiku-4-5\n{extra}");
    let spec = fleet_core::spec::AgentSpec::from_yaml(Path::new("echo-bot.yaml"), &yaml).unwrap();
    let mut plan =
        fleet_sandbox::WorkerPlan::for_spec(&spec, "/usr/bin/python3", interpreter_policy(place));
    plan.args = vec![fixture_in(place, "worker.py").into()];
    plan
}

/// The gateway: model turns, metering and budgets through real sandboxed workers.
#[path = "gateway/mod.rs"]
mod gateway;
/// The model behind the test supervisors' gateway.
#[path = "gateway/mock.rs"]
mod mock;

/// A supervisor whose gateway is the mock model.
fn supervisor_with_mock(sandbox: Sandbox) -> fleet_sandbox::Supervisor {
    fleet_sandbox::Supervisor::new(
        sandbox,
        std::sync::Arc::new(fleet_core::pricing::PriceTable::builtin().unwrap()),
    )
    .with_gateway(std::sync::Arc::new(mock::MockModel))
}

#[test]
fn python_runs_under_the_baseline_profile() {
    let Some(sandbox) = sandbox_or_skip("python_runs…") else {
        return;
    };
    let place = Place::new();
    let script = "import json, pathlib, sys, threading\n\
        t = threading.Thread(target=lambda: None); t.start(); t.join()\n\
        pathlib.Path(sys.argv[1], 'py.txt').write_text('from python')\n\
        print(json.dumps({'sum': sum(range(10)), 'read': pathlib.Path('/etc/hostname').exists()}))";
    let stdout = interpret(
        &sandbox,
        &place,
        "/usr/bin/python3",
        &[
            "-c".as_ref(),
            script.as_ref(),
            place.path("work").as_os_str(),
        ],
    );
    assert_eq!(stdout, r#"{"sum": 45, "read": true}"#);
    assert_eq!(
        std::fs::read_to_string(place.path("work/py.txt")).unwrap(),
        "from python"
    );
}

#[test]
fn python_and_node_start_children_and_grandchildren_only_with_subprocesses() {
    let Some(sandbox) = sandbox_or_skip("python_and_node_start_children…") else {
        return;
    };
    let place = Place::new();
    // A child (sh) that starts a grandchild (echo), the way each standard library does it.
    let python = "import subprocess\n\
        try:\n    print(subprocess.run(['/bin/sh', '-c', '/bin/echo grandchild'], capture_output=True, text=True, check=True).stdout.strip())\n\
        except OSError as e:\n    print('refused:', e.errno)";
    let node = "const cp = require('child_process');\
        try { console.log(cp.execFileSync('/bin/sh', ['-c', '/bin/echo grandchild']).toString().trim()); }\
        catch (e) { console.log('refused:', e.code); }";
    let mut interpreters = vec![("/usr/bin/python3", python)];
    if Path::new("/usr/bin/node").exists() {
        interpreters.push(("/usr/bin/node", node));
    }
    for (program, script) in interpreters {
        let flag = if program.ends_with("node") {
            "-e"
        } else {
            "-c"
        };
        let run = |subprocesses: bool| {
            let mut policy = interpreter_policy(&place);
            policy.subprocesses = subprocesses;
            let out = sandbox
                .command(&policy, program, [flag, script])
                .unwrap()
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{program}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(run(true), "grandchild", "{program} with subprocesses: true");
        let refused = run(false);
        assert!(
            refused.starts_with("refused:"),
            "{program} without subprocesses: {refused}"
        );
    }
}

#[test]
fn node_runs_under_the_baseline_profile() {
    let Some(sandbox) = sandbox_or_skip("node_runs…") else {
        return;
    };
    if !Path::new("/usr/bin/node").exists() {
        assert!(
            std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
            "FLEET_SANDBOX_REQUIRE=1 but /usr/bin/node is missing"
        );
        eprintln!("skipping node_runs…: no /usr/bin/node");
        return;
    }
    let place = Place::new();
    let script = "const fs = require('fs'); const path = require('path');\
        fs.writeFileSync(path.join(process.argv[1], 'node.txt'), 'from node');\
        let denied = false; try { fs.writeFileSync(process.argv[2] + '/x', 'x'); } catch (e) { denied = e.code; }\
        setTimeout(() => console.log(JSON.stringify({ n: [1, 2, 3].length, denied })), 5);";
    let stdout = interpret(
        &sandbox,
        &place,
        "/usr/bin/node",
        &[
            "-e".as_ref(),
            script.as_ref(),
            place.path("work").as_os_str(),
            place.path("out").as_os_str(),
        ],
    );
    assert_eq!(stdout, r#"{"n":3,"denied":"EACCES"}"#);
    assert_eq!(
        std::fs::read_to_string(place.path("work/node.txt")).unwrap(),
        "from node"
    );
}

#[tokio::test]
async fn the_command_sandbox_confines_agent_commands_the_same_way() {
    let Some(sandbox) = sandbox_or_skip("the_command_sandbox…") else {
        return;
    };
    let place = Place::new();
    let commands = SandboxedCommands::new(sandbox, place.policy());
    assert!(commands.is_confined());
    let mut request = CommandRequest::new(
        "sh",
        vec![
            "-c".into(),
            format!(
                "echo kept > kept.txt; echo lost > {}/lost.txt || echo refused; read l < kept.txt; echo $l",
                place.path("out").display()
            ),
        ],
        place.path("work"),
    );
    request.timeout = Duration::from_secs(20);
    let out = commands.run(request.clone()).await.unwrap();
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\nkept\n");
    assert!(place.path("work/kept.txt").exists());
    assert!(!place.path("out/lost.txt").exists());

    // A pipeline needs a second process: refused without `subprocesses`.
    request.args = vec!["-c".into(), "echo a | cat".into()];
    let out = commands.run(request.clone()).await.unwrap();
    assert!(!out.success());

    request.program = "/nonexistent/tool".into();
    let out = commands.run(request).await.unwrap();
    assert_eq!(out.code, Some(SETUP_FAILED));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("fleet-sandbox: cannot execute /nonexistent/tool"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_writable_path_the_worker_cannot_write_stops_it_before_it_starts() {
    let Some(sandbox) = sandbox_or_skip("a_writable_path…") else {
        return;
    };
    let place = Place::new();
    let mut policy = place.policy();
    policy.writable.push(place.path("missing"));
    let error = sandbox.command(&policy, "/bin/true", [""; 0]).unwrap_err();
    assert_eq!(
        error,
        SandboxError::Policy(format!(
            "writable path {} does not exist: create it first",
            place.path("missing").display()
        ))
    );
    if rustix::process::geteuid().is_root() {
        let mut policy = place.policy();
        policy.writable = vec![place.path("out")];
        let message = sandbox
            .command(&policy, "/bin/true", [""; 0])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("is not writable by uid {UNPRIVILEGED_ID}")),
            "{message}"
        );
        let commands = SandboxedCommands::new(sandbox, policy);
        let refused = commands
            .run(CommandRequest::new("/bin/true", vec![], place.path("work")))
            .await;
        assert!(matches!(refused, Err(ExecError::Refused { .. })));
    }
}

mod protocol {
    //! Workers in Python and Node, driven through the same protocol and the same sandbox.

    use fleet_core::ipc::{InitializeParams, Note, TaskLimits};
    use fleet_sandbox::{WorkerError, WorkerProcess};
    use serde_json::json;

    use super::*;

    async fn drive(interpreter: &str, script: &str, version: &str) {
        let Some(sandbox) = sandbox_or_skip(script) else {
            return;
        };
        if !Path::new(interpreter).exists() {
            assert!(
                std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
                "FLEET_SANDBOX_REQUIRE=1 but {interpreter} is missing"
            );
            eprintln!("skipping {script}: no {interpreter}");
            return;
        }
        let place = Place::new();
        // The script must be readable by the unprivileged worker.
        let script_copy = fixture_in(&place, script);
        let start = || {
            let command = sandbox
                .tokio_command(&interpreter_policy(&place), interpreter, [&script_copy])
                .unwrap();
            WorkerProcess::spawn(command).unwrap()
        };
        let worker = start();
        let mut notes = worker.notifications().unwrap();
        let init = worker
            .initialize(InitializeParams {
                protocol: fleet_core::ipc::PROTOCOL_VERSION,
                spec: json!({"name": "echo-bot"}),
                workspace: place.path("work"),
                limits: TaskLimits::default(),
                gateway: None,
            })
            .await
            .unwrap();
        assert_eq!(
            (init.role.as_str(), init.version.as_deref()),
            ("echo-bot", Some(version))
        );

        let result = worker.run_task(task("t1", "hello")).await.unwrap();
        assert_eq!(result.text, "olleh");
        assert_eq!(
            std::fs::read_to_string(place.path("work/t1.txt")).unwrap(),
            "hello"
        );
        match notes.recv().await.unwrap() {
            Note::Progress(p) => assert_eq!((p.task_id.as_str(), p.fraction), ("t1", Some(0.5))),
            other => panic!("{other:?}"),
        }
        match notes.recv().await.unwrap() {
            Note::Usage(u) => assert_eq!((u.usage.input, u.usage.output), (100, 20)),
            other => panic!("{other:?}"),
        }

        // A line that is not a message is counted and skipped; the answer still arrives.
        assert_eq!(
            worker.run_task(task("t2", "garbage")).await.unwrap().text,
            "egabrag"
        );
        assert_eq!(worker.protocol_error_count(), 1);
        let errors = worker.take_protocol_errors();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("not JSON at column 2"), "{errors:?}");

        // Dying mid-task fails the call with the exit status and the end of its log.
        let died = worker.run_task(task("t3", "crash")).await.unwrap_err();
        let WorkerError::Exited {
            status,
            stderr_tail,
        } = died
        else {
            panic!("{died:?}")
        };
        assert_eq!(status, "exit status 3");
        assert!(stderr_tail.contains("giving up on t3"), "{stderr_tail}");
        // The garbage line earlier was answered with a parse error, which the worker logged.
        assert!(stderr_tail.contains("-32700"), "{stderr_tail}");

        // A fresh worker is killed from outside: the call in flight fails, not hangs.
        let worker = start();
        worker
            .initialize(InitializeParams {
                protocol: fleet_core::ipc::PROTOCOL_VERSION,
                spec: json!({"name": "echo-bot"}),
                workspace: place.path("work"),
                limits: TaskLimits::default(),
                gateway: None,
            })
            .await
            .unwrap();
        worker.kill();
        let killed = worker.run_task(task("t4", "late")).await.unwrap_err();
        assert!(
            matches!(&killed, WorkerError::Exited { status, .. } if status == "killed by signal 9"),
            "{killed:?}"
        );
    }

    #[tokio::test]
    async fn a_python_worker_speaks_the_protocol_under_the_sandbox() {
        drive("/usr/bin/python3", "worker.py", "py").await;
    }

    #[tokio::test]
    async fn a_node_worker_speaks_the_protocol_under_the_sandbox() {
        drive("/usr/bin/node", "worker.js", "node").await;
    }
}

mod supervisor {
    //! Pools, reuse, retries after a worker dies, kills and the idle reaper, with the Python
    //! fixture worker under the sandbox.

    use std::sync::Arc;

    use fleet_core::ipc::Note;
    use fleet_core::pricing::PriceTable;
    use fleet_sandbox::{
        Supervisor, SupervisorError, SupervisorEvent, TaskUpdate, WorkerError, WorkerPlan,
    };

    use super::*;

    fn plan(place: &Place) -> WorkerPlan {
        let mut plan = python_plan(place, "");
        plan.restart_backoff = Duration::from_millis(10);
        plan
    }

    fn drain(
        events: &mut tokio::sync::broadcast::Receiver<SupervisorEvent>,
    ) -> Vec<SupervisorEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn workers_are_reused_replaced_after_dying_and_tasks_retried() {
        let Some(sandbox) = sandbox_or_skip("workers_are_reused…") else {
            return;
        };
        let place = Place::new();
        let supervisor = supervisor_with_mock(sandbox);
        let mut events = supervisor.subscribe();
        let mut plan = plan(&place);
        plan.min = 1;
        supervisor.add(plan).await.unwrap();
        assert_eq!(supervisor.workers("echo-bot"), 1);

        let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
        let done = supervisor
            .stream("echo-bot", task("t1", "abc"), Some(tx))
            .await
            .unwrap();
        assert_eq!(done.result.text, "cba");
        assert_eq!(done.result.output.unwrap()["model"], "echo: abc");
        let updates: Vec<_> = std::iter::from_fn(|| notes.try_recv().ok()).collect();
        assert!(
            updates
                .iter()
                .any(|u| matches!(u, TaskUpdate::Note(Note::Progress(_)))),
            "{updates:?}"
        );
        assert!(
            updates
                .iter()
                .any(|u| matches!(u, TaskUpdate::Note(Note::Usage(_)))),
            "{updates:?}"
        );
        assert!(
            updates.iter().any(|u| matches!(u, TaskUpdate::Turn(_))),
            "{updates:?}"
        );
        assert_eq!(
            supervisor
                .call("echo-bot", task("t2", "xy"))
                .await
                .unwrap()
                .result
                .text,
            "yx"
        );
        assert_eq!(
            supervisor.workers("echo-bot"),
            1,
            "the idle worker is reused"
        );
        // A line that is not a message is answered, and reported to whoever listens.
        supervisor
            .call("echo-bot", task("t2b", "garbage"))
            .await
            .unwrap();
        let reported = drain(&mut events);
        assert!(
            reported.iter().any(|e| matches!(e, SupervisorEvent::ProtocolError { message, .. } if message.starts_with("not JSON"))),
            "{reported:?}"
        );

        // The task kills its worker every time: one retry on a fresh worker, then the error.
        let error = supervisor
            .call("echo-bot", task("t3", "crash"))
            .await
            .unwrap_err();
        let SupervisorError::Task(WorkerError::Exited {
            status,
            stderr_tail,
        }) = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(status, "exit status 3");
        assert!(stderr_tail.contains("giving up on t3"));
        let seen = drain(&mut events);
        let died = seen
            .iter()
            .filter(
                |e| matches!(e, SupervisorEvent::WorkerDied { task_id: Some(t), .. } if t == "t3"),
            )
            .count();
        assert_eq!(died, 2, "{seen:?}");
        assert!(seen.contains(&SupervisorEvent::TaskRetried {
            agent: "echo-bot".into(),
            task_id: "t3".into(),
            attempt: 2
        }));
        // A fresh worker takes the next task.
        assert_eq!(
            supervisor
                .call("echo-bot", task("t4", "ok"))
                .await
                .unwrap()
                .result
                .text,
            "ko"
        );
        assert!(matches!(
            supervisor.call("nobody", task("t5", "x")).await,
            Err(SupervisorError::UnknownAgent(a)) if a == "nobody"
        ));
    }

    #[tokio::test]
    async fn kill_fails_the_task_in_flight_and_idle_workers_are_stopped() {
        let Some(sandbox) = sandbox_or_skip("kill_fails…") else {
            return;
        };
        let place = Place::new();
        let supervisor = Supervisor::new(sandbox, Arc::new(PriceTable::builtin().unwrap()));
        let mut plan = plan(&place);
        plan.task_retries = 0;
        plan.idle_timeout = Duration::from_millis(200);
        supervisor.add(plan).await.unwrap();
        let running = {
            let supervisor = supervisor.clone();
            tokio::spawn(async move { supervisor.call("echo-bot", task("t1", "sleep")).await })
        };
        while supervisor.workers("echo-bot") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        supervisor.kill("echo-bot");
        let killed = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&killed, SupervisorError::Task(WorkerError::Exited { status, .. }) if status == "killed by signal 9"),
            "{killed:?}"
        );
        // An idle worker beyond `min` (0) goes after the idle timeout.
        supervisor.call("echo-bot", task("t2", "ab")).await.unwrap();
        assert_eq!(supervisor.workers("echo-bot"), 1);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(supervisor.workers("echo-bot"), 0);
    }
}

mod runner {
    //! Agent calls sent to a specialist's sandboxed workers, recorded as work units.

    use std::sync::Arc;

    use fleet_core::agent::{AgentCall, AgentError, AgentRunner, CallContext};
    use fleet_core::command::WorkUnitDraft;
    use fleet_core::journal::{Journal, SharedStore};
    use fleet_core::spec::AgentSpec;
    use fleet_core::store::memory::MemoryStore;
    use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
    use fleet_sandbox::SpecialistRunner;

    use super::*;

    #[tokio::test]
    async fn calls_run_on_the_specialist_and_its_unit_records_usage_and_death() {
        let Some(sandbox) = sandbox_or_skip("calls_run_on_the_specialist…") else {
            return;
        };
        let place = Place::new();
        let mut plan = python_plan(&place, "");
        plan.task_retries = 0;
        // The calls name the same spec the workers were started with.
        let spec: Arc<AgentSpec> = Arc::new(serde_json::from_value(plan.spec.clone()).unwrap());
        let supervisor = supervisor_with_mock(sandbox);
        supervisor.add(plan).await.unwrap();
        let runner = SpecialistRunner::new(supervisor.clone());

        let store: SharedStore = Arc::new(MemoryStore::new());
        let journal = Journal::create(store, None).await.unwrap();
        let (_, root) = journal
            .start_turn(None, WorkUnitDraft::new(WorkUnitKind::Workflow))
            .await
            .unwrap();
        let call = |prompt: &str| AgentCall {
            agent: Some(spec.clone()),
            ..AgentCall::new(prompt)
        };
        let outcome = runner
            .run(call("stressed"), CallContext::new(journal.clone(), root))
            .await
            .unwrap();
        assert_eq!(outcome.text, "desserts");
        // The unit records what the gateway metered (the mock's 2 input and 20 output
        // tokens), not what the worker claimed (100 and 20).
        assert_eq!((outcome.usage.input, outcome.usage.output), (2, 20));
        assert_eq!(outcome.model_requests, 1);
        let (state, usage, agent) = journal
            .read(|t| {
                let u = t.work_unit(outcome.work_unit_id).unwrap();
                (u.state, u.usage, u.agent.clone())
            })
            .await;
        assert_eq!(state, WorkUnitState::Completed);
        assert_eq!((usage.input, usage.output), (2, 20));
        assert_eq!(agent.as_deref(), Some("echo-bot"));
        assert_eq!(
            outcome.cost.usd,
            supervisor.spent("echo-bot").unwrap().spent.usd
        );
        assert!(outcome.cost.usd > fleet_core::money::Usd::ZERO);
        // Its turn's reservation was journaled before the turn went to the model, and the
        // usage recorded after it settles it: nothing is left unconfirmed.
        let (admitted, unconfirmed) = journal
            .read(|t| {
                let admitted: Vec<_> = t
                    .activities
                    .iter()
                    .filter(|a| a.work_unit_id == Some(outcome.work_unit_id))
                    .filter_map(|a| match &a.kind {
                        fleet_core::activity::ActivityKind::TurnAdmitted {
                            model,
                            reserved,
                            tokens_before,
                        } => Some((model.clone(), *reserved, *tokens_before)),
                        _ => None,
                    })
                    .collect();
                (admitted, t.unconfirmed())
            })
            .await;
        assert_eq!(admitted.len(), 1, "{admitted:?}");
        assert_eq!(admitted[0].0, "claude-haiku-4-5");
        assert!(
            admitted[0].1 >= outcome.cost.usd && admitted[0].2 == 0,
            "{admitted:?}"
        );
        assert!(unconfirmed.is_empty(), "{unconfirmed:?}");

        let died = runner
            .run(call("crash"), CallContext::new(journal.clone(), root))
            .await
            .unwrap_err();
        let AgentError::Worker(reason) = &died else {
            panic!("{died:?}")
        };
        assert!(reason.contains("exit status 3"), "{reason}");
        let failed = journal
            .read(|t| {
                t.children(root)
                    .find(|u| u.state == WorkUnitState::Failed)
                    .and_then(|u| u.error.clone())
            })
            .await
            .unwrap();
        assert!(
            failed.contains("exit status 3") && failed.contains("giving up"),
            "{failed}"
        );
    }
}
