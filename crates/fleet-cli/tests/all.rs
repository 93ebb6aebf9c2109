//! The `fleet` binary driven as a user drives it, and the workspace's architecture rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod architecture {
    use std::process::Command;

    /// fleet-workflow, fleet-providers and fleet-sandbox meet only through fleet-core: none of them
    /// depends on a sibling or on the CLI (in any dependency section).
    #[test]
    fn siblings_depend_only_on_fleet_core() {
        let output = Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
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
            for forbidden in siblings.iter().copied().chain(["fleet-cli"]) {
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
