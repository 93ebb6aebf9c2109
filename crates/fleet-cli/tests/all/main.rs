//! The `fleet` binary driven as a user drives it, and the workspace's architecture rules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod architecture {
    use std::process::Command;

    /// fleet-workflow, fleet-providers and fleet-sandbox meet only through fleet-core: none of them
    /// depends on a sibling or on the CLI (in any dependency section).
    /// What `cargo ARGS` prints, run offline in this crate; fails the test when cargo fails.
    fn cargo(args: &[&str]) -> String {
        let output = Command::new(env!("CARGO"))
            .args(args)
            .arg("--offline")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cargo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn siblings_depend_only_on_fleet_core() {
        let metadata: serde_json::Value =
            serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--no-deps"]))
                .unwrap();
        let packages = metadata["packages"].as_array().unwrap();
        let deps_of = |name: &str| -> Vec<String> {
            let package = packages
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{name} is a workspace member"));
            package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let siblings = ["fleet-workflow", "fleet-providers", "fleet-sandbox"];
        for crate_name in siblings {
            let deps = deps_of(crate_name);
            assert!(
                deps.iter().any(|d| d == "fleet-core"),
                "{crate_name} builds on fleet-core"
            );
            // A crate's dev-dependency on itself (for its own test features) is no sibling.
            let others = siblings.iter().copied().filter(|s| *s != crate_name);
            for forbidden in others.chain(["fleet-cli"]) {
                assert!(
                    !deps.iter().any(|d| d == forbidden),
                    "{crate_name} depends on {forbidden}: siblings meet only through fleet-core"
                );
            }
        }
        let core = deps_of("fleet-core");
        for name in siblings.iter().copied().chain(["fleet-cli"]) {
            assert!(
                !core.iter().any(|d| d == name),
                "fleet-core depends on {name}"
            );
        }
    }

    /// The shipped `fleet` (its default features) compiles in no test helpers: neither crate's
    /// `testkit`, so no fake model. Only the `bench` feature brings it.
    #[test]
    fn the_shipped_binary_has_no_testkit() {
        let features_of = |krate: &str, extra: &[&str]| {
            let mut args = vec!["tree", "-p", "fleet-cli", "-e", "features", "-i", krate];
            args.extend(extra);
            cargo(&args)
        };
        for krate in ["fleet-core", "fleet-workflow"] {
            let tree = features_of(krate, &[]);
            assert!(!tree.contains("feature \"testkit\""), "{krate}:\n{tree}");
        }
        let bench = features_of("fleet-workflow", &["--features", "bench"]);
        assert!(bench.contains("feature \"testkit\""), "{bench}");
    }

    /// Every member declares its dependencies through `[workspace.dependencies]`, so each
    /// crate's version is chosen once, in the root `Cargo.toml`.
    #[test]
    fn every_dependency_is_declared_once_for_the_workspace() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let workspace: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let members = workspace["workspace"]["members"].as_array().unwrap();
        let mut wrong = Vec::new();
        for member in members {
            let member = member.as_str().unwrap();
            let manifest: toml::Table =
                std::fs::read_to_string(root.join(member).join("Cargo.toml"))
                    .unwrap()
                    .parse()
                    .unwrap();
            let sections = ["dependencies", "dev-dependencies", "build-dependencies"];
            for section in sections {
                let Some(deps) = manifest.get(section).and_then(toml::Value::as_table) else {
                    continue;
                };
                for (name, spec) in deps {
                    let shared = spec
                        .get("workspace")
                        .and_then(toml::Value::as_bool)
                        .unwrap_or(false);
                    // A crate's own path, for its features in its tests, is not a version.
                    let own = spec.get("path").and_then(toml::Value::as_str) == Some(".");
                    if !shared && !own {
                        wrong.push(format!("{member}: [{section}] {name}"));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "declare these in the root's [workspace.dependencies] and use `workspace = true`: {wrong:?}"
        );
    }
}

mod cli {
    use std::process::Command;

    fn fleet() -> Command {
        Command::new(env!("CARGO_BIN_EXE_fleet"))
    }

    #[test]
    fn agents_validate_reports_every_problem_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("doc-bot.yaml"),
            "name: doc-bot\nrole: docs\nmodel: claude-haiku-4-5\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "name: bad\nrole: r\nmodel: m\nsandbox:\n  allowed_syscalls: [opn]\n",
        )
        .unwrap();
        let out = fleet()
            .args(["agents", "validate"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("ok       doc-bot"), "{stdout}");
        assert!(stdout.contains("bad.yaml:5:22: sandbox.allowed_syscalls[0]: unknown syscall \"opn\" (did you mean \"open\"?)"), "{stdout}");
        let expected_end = format!("1 valid, 1 problem(s) in {}\n", dir.path().display());
        assert!(stdout.ends_with(&expected_end), "{stdout}");
    }

    #[test]
    fn the_sample_agents_are_valid() {
        let agents = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents");
        let out = fleet()
            .args(["agents", "validate"])
            .arg(&agents)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("3 valid, 0 problem(s)"), "{stdout}");
    }

    #[test]
    fn schemas_match_the_committed_files() {
        for (which, file) in [
            ("agent-spec", "agent-spec.schema.json"),
            ("ipc", "ipc.schema.json"),
        ] {
            let out = fleet().args(["schema", which]).output().unwrap();
            assert!(out.status.success());
            let committed = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../docs")
                    .join(file),
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                committed,
                "docs/{file} is stale: regenerate it with `cargo run -p fleet-cli -- schema {which} > docs/{file}`"
            );
        }
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let out = fleet()
            .args(["agents", "validate", "--bogus"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--bogus'"));
    }

    #[test]
    fn the_fleet_binary_serves_as_the_sandbox_helper() {
        if let Err(e) = fleet_sandbox::landlock_available() {
            assert!(
                std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
                "FLEET_SANDBOX_REQUIRE=1 but {e}"
            );
            return;
        }
        let sandbox = fleet_sandbox::Sandbox::new(
            env!("CARGO_BIN_EXE_fleet"),
            vec!["__sandbox-helper".into()],
        );
        let dir = tempfile::tempdir().unwrap();
        let script = "import sys\ntry:\n    open(sys.argv[1] + '/x', 'w')\n    print('wrote')\nexcept PermissionError:\n    print('refused')";
        let out = sandbox
            .command(
                &fleet_sandbox::SandboxPolicy::default(),
                "/usr/bin/python3",
                ["-c".as_ref(), script.as_ref(), dir.path().as_os_str()],
            )
            .unwrap()
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\n");
        let usage = fleet()
            .args(["__sandbox-helper", "--bogus"])
            .output()
            .unwrap();
        assert_eq!(usage.status.code(), Some(fleet_sandbox::SETUP_FAILED));
    }
}

mod no_network {
    //! A model call made from inside a sandbox without network fails at once with the reason,
    //! rather than after rounds of retries.

    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    #[test]
    fn a_connection_the_sandbox_forbids_fails_at_once_and_says_why() {
        if let Err(e) = fleet_sandbox::landlock_available() {
            assert!(
                std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
                "FLEET_SANDBOX_REQUIRE=1 but {e}"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        // The binary must be reachable by the unprivileged user wherever the build is.
        let fleet = dir.path().join("fleet");
        std::fs::copy(env!("CARGO_BIN_EXE_fleet"), &fleet).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let sandbox = fleet_sandbox::Sandbox::new(&fleet, vec!["__sandbox-helper".into()]);
        let policy = fleet_sandbox::SandboxPolicy {
            writable: vec![home.clone()],
            readable: vec![dir.path().to_path_buf()],
            env: vec![
                ("HOME".into(), home.display().to_string()),
                ("ANTHROPIC_API_KEY".into(), "sk-test".into()),
                // A loopback address: nothing listens, and the sandbox refuses the socket first.
                ("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into()),
            ],
            ..fleet_sandbox::SandboxPolicy::default()
        };
        // A binary just copied can be "busy" for a moment: another test's fork may still hold
        // the copy's descriptor until its exec.
        let mut tries = 0;
        let (out, took) = loop {
            let started = Instant::now();
            match sandbox
                .command(&policy, &fleet, ["ask", "hello", "--json"])
                .unwrap()
                .current_dir(&home)
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                result => break (result.unwrap(), started.elapsed()),
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}{stderr}");
        assert!(
            format!("{stdout}{stderr}").contains("the system refused the connection")
                && format!("{stdout}{stderr}").contains("`sandbox.network: true`"),
            "{stdout}{stderr}"
        );
        assert!(
            took < Duration::from_secs(4),
            "no retries: it took {took:?}"
        );
    }
}

mod patch_bot {
    //! The sample patch-bot, sandboxed, on the scripted provider, against a real git
    //! repository with a failing test: the fix is committed and the tests pass.

    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;

    use fleet_core::ipc::TaskRunParams;
    use fleet_core::pricing::PriceTable;
    use fleet_core::provider::{StopReason, StreamEvent};
    use fleet_core::sandbox::SandboxPolicy;
    use fleet_core::spec::AgentSpec;
    use fleet_core::usage::TokenUsage;
    use fleet_providers::model::scripted::Exchange;
    use fleet_providers::model::scripted::{Cassette, ScriptedProvider};
    use fleet_sandbox::{Sandbox, Supervisor, WorkerPlan};
    use serde_json::json;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "safe.directory=*", "-C"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn events(list: Vec<StreamEvent>) -> Exchange {
        Exchange {
            expect: json!({}),
            events: list,
            ..Exchange::default()
        }
    }

    fn usage(input: u64, output: u64) -> StreamEvent {
        StreamEvent::Usage {
            usage: TokenUsage {
                input,
                output,
                ..TokenUsage::default()
            },
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        repo: PathBuf,
        spec: AgentSpec,
        supervisor: Supervisor,
    }

    const FIXED: &str = "def add(a, b):\n    return a + b\n";

    /// A repository with a failing test, and a supervisor running `agent` (one of the sample
    /// agents) on a cassette whose model writes `path` with `content` and then says `answer`;
    /// `None` (the test skips) without Landlock.
    async fn setup(agent: &str, path: &str, content: &str, answer: &str) -> Option<Setup> {
        if let Err(e) = fleet_sandbox::landlock_available() {
            assert!(
                std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
                "FLEET_SANDBOX_REQUIRE=1 but {e}"
            );
            eprintln!("skipping the patch-bot test: {e}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().to_path_buf();
        std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = project.join("workspace");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
        std::fs::write(
            repo.join("test_calc.py"),
            "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
        )
        .unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(
            &repo,
            &["-c", "user.name=t", "-c", "user.email=t@t", "add", "."],
        );
        git(
            &repo,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                "start",
            ],
        );
        if rustix::process::geteuid().is_root() {
            let id = fleet_sandbox::UNPRIVILEGED_ID;
            let status = Command::new("chown")
                .args(["-R", &format!("{id}:{id}")])
                .arg(&repo)
                .status()
                .unwrap();
            assert!(status.success());
        }

        // The model's side of the conversation: write a file, then say so.
        let cassette = Cassette {
            exchanges: vec![
                events(vec![
                    StreamEvent::ToolCallStart {
                        index: 0,
                        id: "t1".into(),
                        name: "write_file".into(),
                    },
                    StreamEvent::ToolCallEnd {
                        index: 0,
                        id: "t1".into(),
                        name: "write_file".into(),
                        input: json!({"path": path, "content": content}),
                    },
                    usage(900, 60),
                    StreamEvent::Done {
                        stop_reason: StopReason::ToolUse,
                    },
                ]),
                events(vec![
                    StreamEvent::TextDelta {
                        text: answer.into(),
                    },
                    usage(1200, 12),
                    StreamEvent::Done {
                        stop_reason: StopReason::EndTurn,
                    },
                ]),
            ],
            ..Cassette::default()
        };
        // The worker binary must be reachable by the unprivileged user wherever the build is.
        let fleet: PathBuf = project.join("fleet");
        std::fs::copy(env!("CARGO_BIN_EXE_fleet"), &fleet).unwrap();

        let spec = AgentSpec::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../agents/{agent}.yaml")),
        )
        .unwrap();
        let mut policy = SandboxPolicy::from_spec(&spec.sandbox, &project);
        policy
            .env
            .push(("HOME".to_owned(), repo.display().to_string()));
        let mut plan = WorkerPlan::for_spec(&spec, &fleet, policy);
        plan.args = vec!["__worker".into()];
        let sandbox = Sandbox::new(&fleet, vec!["__sandbox-helper".into()]);
        // The model is the supervisor's: the worker's turns come to it through the gateway.
        let supervisor = Supervisor::new(sandbox, Arc::new(PriceTable::builtin().unwrap()))
            .with_gateway(Arc::new(ScriptedProvider::new(cassette)));
        supervisor.add(plan).await.unwrap();

        Some(Setup {
            _dir: dir,
            repo,
            spec,
            supervisor,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn patch_bot_fixes_the_failing_test_and_commits_the_fix() {
        let Some(Setup {
            _dir,
            repo,
            supervisor,
            ..
        }) = setup(
            "patch-bot",
            "calc.py",
            FIXED,
            "add subtracted; it adds now.",
        )
        .await
        else {
            return;
        };
        let done = supervisor
            .call(
                "patch-bot",
                TaskRunParams {
                    task_id: "fix-1".into(),
                    prompt: "Make the tests pass.".into(),
                    input: Some(json!({"test_command": ["python3", "-m", "unittest", "-q"]})),
                },
            )
            .await
            .unwrap();
        let head = git(&repo, &["rev-parse", "HEAD"]);
        assert_eq!(
            done.result.output.as_ref().unwrap()["commit"],
            json!(head),
            "{}",
            done.result.text
        );
        assert!(
            done.result
                .text
                .contains(&format!("the fix is commit {head}")),
            "{}",
            done.result.text
        );
        assert_eq!(
            git(&repo, &["log", "-1", "--format=%s"]),
            "patch-bot: Make the tests pass."
        );
        assert_eq!(git(&repo, &["show", "HEAD:calc.py"]), FIXED.trim_end());
        assert_eq!(
            git(&repo, &["status", "--porcelain", "--untracked-files=no"]),
            ""
        );
        // Only the agent's change is committed, not what the test run left (__pycache__).
        assert_eq!(
            git(&repo, &["show", "--name-only", "--format=", "HEAD"]),
            "calc.py"
        );
        // The tests pass, run here outside the sandbox.
        let tests = Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(tests.status.success(), "{tests:?}");
        // The usage the worker reported was charged to the agent.
        let spent = supervisor.spent("patch-bot").unwrap();
        assert_eq!(spent.spent.output_tokens, 72);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_workflow_agent_call_runs_the_sandboxed_specialist() {
        let Some(Setup {
            _dir,
            repo,
            spec,
            supervisor,
        }) = setup(
            "patch-bot",
            "calc.py",
            FIXED,
            "add subtracted; it adds now.",
        )
        .await
        else {
            return;
        };
        let store: fleet_core::journal::SharedStore =
            Arc::new(fleet_core::store::memory::MemoryStore::new());
        let engine = fleet_workflow::WorkflowEngine::new(
            store.clone(),
            Arc::new(fleet_sandbox::SpecialistRunner::new(supervisor)),
        )
        .with_specs([spec]);
        let script = fleet_workflow::Script::parse(
            "fix.js",
            "export const meta = { name: 'fix', description: 'fixes the tests' };\n\
             return await agent('Make the tests pass.', { agentType: 'patch-bot', label: 'fix calc' });",
        )
        .unwrap();
        let handle = engine
            .start(
                Arc::new(script),
                fleet_workflow::RunOptions::default(),
                None,
            )
            .await
            .unwrap();
        let summary = handle.wait().await;
        assert_eq!(
            summary.state,
            fleet_workflow::RunState::Completed,
            "{:?}",
            summary.error
        );
        let head = git(&repo, &["rev-parse", "HEAD"]);
        // patch-bot found the Python tests itself (no test command was given).
        assert!(
            summary
                .result
                .as_str()
                .unwrap()
                .ends_with(&format!("the fix is commit {head}.")),
            "{}",
            summary.result
        );
        assert_eq!(git(&repo, &["show", "HEAD:calc.py"]), FIXED.trim_end());
        let thread = store.snapshot_dyn(handle.id()).await.unwrap().unwrap();
        let root = thread.turns[0].root_id;
        let unit = thread.children(root).next().unwrap();
        assert_eq!(
            (
                unit.label.as_deref(),
                unit.agent.as_deref(),
                unit.state.as_str()
            ),
            (Some("fix calc"), Some("patch-bot"), "completed")
        );
        assert_eq!(unit.usage.output, 72);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_writer_bot_commits_new_tests_only_when_they_fail() {
        let pinned = "import unittest\nfrom calc import subtract\n\nclass S(unittest.TestCase):\n    def test_subtract(self):\n        self.assertEqual(subtract(5, 3), 2)\n";
        let Some(Setup {
            _dir,
            repo,
            supervisor,
            ..
        }) = setup(
            "test-writer-bot",
            "test_subtract.py",
            pinned,
            "Pinned subtract().",
        )
        .await
        else {
            return;
        };
        let task = |id: &str| TaskRunParams {
            task_id: id.into(),
            prompt: "Pin the behaviour of subtract(a, b).".into(),
            input: Some(
                json!({"test_command": ["python3", "-m", "unittest", "test_subtract", "-q"]}),
            ),
        };
        let done = supervisor
            .call("test-writer-bot", task("pin-1"))
            .await
            .unwrap();
        let head = git(&repo, &["rev-parse", "HEAD"]);
        assert_eq!(
            done.result.output.as_ref().unwrap()["commit"],
            json!(head),
            "{}",
            done.result.text
        );
        assert_eq!(
            git(&repo, &["log", "-1", "--format=%s", "--name-only"]),
            "test-writer-bot: Pin the behaviour of subtract(a, b).\n\ntest_subtract.py"
        );
    }
}

#[cfg(feature = "bench")]
mod bench_workloads;
mod budget;
mod coding_agents;
mod faults;
mod fleet_e2e;
mod fleet_tui;
mod mock_model;
mod module_cycles;
mod store_concurrency;
mod user;
