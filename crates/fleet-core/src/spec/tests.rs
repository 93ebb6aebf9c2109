use proptest::prelude::*;

use super::*;

fn load(name: &str, text: &str) -> Result<AgentSpec, Diagnostics> {
    AgentSpec::from_yaml(Path::new(&format!("agents/{name}.yaml")), text)
}

fn errors(name: &str, text: &str) -> Vec<String> {
    load(name, text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_full_spec_loads() {
    let text = "\
name: doc-bot
role: adds doc comments to changed items
model: claude-haiku-4-5
provider: anthropic
system: |
  You write doc comments.
max_tokens: 4096
effort: low
cost_budget: 0.5
tools: [read_file]
capabilities: [read_files, write_files]
max_tool_calls: 40
timeout: 5m
allowed_syscalls: [mprotect]
sandbox:
  profile: default
  allowed_syscalls: [madvise, mprotect]
  network: false
  subprocesses: false
  writable: [workspace, /tmp/doc-bot]
  landlock: best_effort
  learn: true
";
    let spec = load("doc-bot", text).unwrap();
    assert_eq!(spec.model, "claude-haiku-4-5");
    assert_eq!(spec.system.as_deref(), Some("You write doc comments.\n"));
    assert_eq!(spec.timeout, Some(Duration::from_secs(300)));
    assert_eq!(spec.cost_budget, Usd::from_dollars(0.5));
    assert_eq!(
        spec.effective_cost_budget(),
        Usd::from_dollars(0.5).unwrap()
    );
    assert_eq!(
        spec.capabilities,
        vec![Capability::ReadFiles, Capability::WriteFiles]
    );
    assert_eq!(spec.sandbox.landlock, LandlockMode::BestEffort);
    // The shorthand list is merged into the sandbox block, without repeats.
    assert!(spec.allowed_syscalls.is_empty());
    assert_eq!(
        spec.sandbox.allowed_syscalls,
        vec!["madvise".to_owned(), "mprotect".to_owned()]
    );
    assert_eq!(
        spec.sandbox.writable,
        vec![PathBuf::from("workspace"), PathBuf::from("/tmp/doc-bot")]
    );
}

#[test]
fn a_minimal_spec_gets_safe_defaults() {
    let spec = load(
        "patch-bot",
        "name: patch-bot\nrole: fixes failing tests\nmodel: gpt-5-mini\n",
    )
    .unwrap();
    assert_eq!(spec.sandbox, SandboxSpec::default());
    assert!(!spec.sandbox.network && !spec.sandbox.subprocesses);
    assert_eq!(spec.sandbox.landlock, LandlockMode::Required);
    assert_eq!(spec.effective_cost_budget(), DEFAULT_COST_BUDGET);
    assert_eq!(spec.timeout, None);
    assert_eq!(
        load(
            "patch-bot",
            "name: patch-bot\nrole: r\nmodel: m\ntimeout: 90\n"
        )
        .unwrap()
        .timeout,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        load(
            "patch-bot",
            "name: patch-bot\nrole: r\nmodel: m\ntimeout: 1h 30m\n"
        )
        .unwrap()
        .timeout,
        Some(Duration::from_secs(5400))
    );
}

#[test]
fn an_unknown_syscall_is_located_and_corrected() {
    let text = "name: doc-bot\nrole: docs\nmodel: m\n\nsandbox:\n  allowed_syscalls:\n  - read\n  - write\n  - opn\n";
    assert_eq!(
        errors("doc-bot", text),
        vec![
            "agents/doc-bot.yaml:9:5: sandbox.allowed_syscalls[2]: unknown syscall \"opn\" (did you mean \"open\"?)"
        ]
    );
}

#[test]
fn dangerous_syscalls_point_to_the_right_switch() {
    let text = "name: a\nrole: r\nmodel: m\nallowed_syscalls: [clone, socket, ptrace, io_uring_setup, mount]\n";
    let errs = errors("a", text);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs[0].starts_with("agents/a.yaml:4:20: allowed_syscalls[0]: \"clone\" starts processes: set `sandbox.subprocesses: true`"), "{}", errs[0]);
    assert!(
        errs[1].contains("\"socket\" opens network sockets: set `sandbox.network: true`"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].contains("\"ptrace\" reads or controls other processes and is never allowed"),
        "{}",
        errs[2]
    );
    assert!(errs[3].contains("never allowed"), "{}", errs[3]);
    assert!(
        errs[4].contains("changes namespaces or mounts"),
        "{}",
        errs[4]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "role: r\nmodle: gpt-5\nmax_tokens: lots\neffort: extreme\nsandbox:\n  netwrk: true\n  landlock: maybe\n";
    let errs = errors("x", text);
    assert_eq!(
        errs,
        vec![
            "agents/x.yaml:1:1: name: missing required field \"name\"",
            "agents/x.yaml:1:1: model: missing required field \"model\"",
            "agents/x.yaml:2:1: modle: unknown field \"modle\" (did you mean \"model\"?)",
            "agents/x.yaml:3:13: max_tokens: expected a whole number ≥ 1, found \"lots\"",
            "agents/x.yaml:4:9: effort: \"extreme\" is not one of \"low\", \"medium\", \"high\", \"xhigh\" or \"max\"",
            "agents/x.yaml:6:3: sandbox.netwrk: unknown field \"netwrk\" (did you mean \"network\"?)",
            "agents/x.yaml:7:13: sandbox.landlock: \"maybe\" is not one of \"required\", \"best_effort\" or \"off\"",
        ],
        "{errs:#?}"
    );
}

#[test]
fn what_only_fleet_can_check_is_reported_with_the_schema_errors() {
    let text = "name: b-ad\nrole: 12\nmodel: m\ncost_budget: lots\ntimeout: soon\nallowed_syscalls: [reed]\nsandbox:\n  allowed_syscalls: [ptrace]\n  colour: blue\n  shade: red\n";
    assert_eq!(
        errors("bad", text),
        vec![
            "agents/bad.yaml:1:7: name: the agent is named \"b-ad\" but its file is \"bad\": rename one so they match",
            "agents/bad.yaml:2:7: role: expected non-empty text, found 12",
            "agents/bad.yaml:4:14: cost_budget: expected a number of dollars like 2.50, found \"lots\"",
            "agents/bad.yaml:5:10: timeout: invalid duration \"soon\": expected seconds or a duration such as \"90s\", \"5m\", \"1h 30m\"",
            "agents/bad.yaml:6:20: allowed_syscalls[0]: unknown syscall \"reed\" (did you mean \"read\"?)",
            "agents/bad.yaml:8:22: sandbox.allowed_syscalls[0]: \"ptrace\" reads or controls other processes and is never allowed",
            "agents/bad.yaml:9:3: sandbox.colour: unknown field \"colour\"; expected one of: allowed_syscalls, landlock, learn, network, profile, subprocesses, writable",
            "agents/bad.yaml:10:3: sandbox.shade: unknown field \"shade\"; expected one of: allowed_syscalls, landlock, learn, network, profile, subprocesses, writable",
        ]
    );
}

#[test]
fn names_and_durations_are_checked() {
    assert_eq!(
        errors("doc-bot", "name: docbot\nrole: r\nmodel: m\n"),
        vec![
            "agents/doc-bot.yaml:1:7: name: the agent is named \"docbot\" but its file is \"doc-bot\": rename one so they match"
        ]
    );
    let errs = errors("Bad Name", "name: Bad Name\nrole: r\nmodel: m\n");
    assert!(
        errs[0].starts_with("agents/Bad Name.yaml:1:7: name: expected a name of lowercase letters, digits, '-' and '_' (at most 64), such as \"doc-bot\", found \"Bad Name\""),
        "{errs:?}"
    );
    assert_eq!(
        errors("a", "name: a\nrole: r\nmodel: m\ntimeout: soon\n"),
        vec![
            "agents/a.yaml:4:10: timeout: invalid duration \"soon\": expected seconds or a duration such as \"90s\", \"5m\", \"1h 30m\""
        ]
    );
    // `no` is a string, not a boolean (YAML 1.1's surprise), so it is a type error here.
    let errs = errors("a", "name: a\nrole: r\nmodel: m\nsandbox:\n  network: no\n");
    assert_eq!(
        errs,
        vec!["agents/a.yaml:5:12: sandbox.network: expected true or false, found \"no\""]
    );
}

#[test]
fn broken_yaml_is_located() {
    let errs = errors("a", "name: a\nrole: [r\nmodel: m\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("agents/a.yaml:"), "{}", errs[0]);
    assert!(errs[0].contains("invalid YAML"), "{}", errs[0]);
    let errs = errors("a", "name: a\nname: b\nrole: r\nmodel: m\n");
    assert!(
        errs[0].starts_with("agents/a.yaml:2:1") && errs[0].to_lowercase().contains("duplicate"),
        "{errs:?}"
    );
    let errs = errors("a", "- just\n- a list\n");
    assert!(
        errs[0].contains("expected a mapping of keys to values, found [\"just\",\"a list\"]"),
        "{errs:?}"
    );
    assert_eq!(errors("a", "").len(), 1);
}

#[test]
fn a_directory_loads_the_valid_and_reports_all_the_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "doc-bot.yaml",
        "name: doc-bot\nrole: docs\nmodel: claude-haiku-4-5\n",
    );
    write(
        "patch-bot.yml",
        "name: patch-bot\nrole: patches\nmodel: gpt-5-mini\n",
    );
    write("broken.yaml", "name: broken\nrole: r\n");
    write(
        "worse.yaml",
        "name: worse\nrole: r\nmodel: m\nsandbox: {allowed_syscalls: [opn, bpf]}\n",
    );
    write("notes.txt", "not a spec");
    std::fs::create_dir(dir.path().join("nested.yaml")).unwrap();
    let set = SpecSet::load_dir(dir.path()).unwrap();
    assert_eq!(
        set.specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["doc-bot", "patch-bot"]
    );
    assert_eq!(set.errors.len(), 3, "{:#?}", set.errors);
    assert!(
        set.errors[0].file.ends_with("broken.yaml") && set.errors[0].message.contains("\"model\"")
    );
    assert!(
        set.errors[1].file.ends_with("worse.yaml")
            && set.errors[1].field == "sandbox.allowed_syscalls[0]"
    );
    assert!(
        set.errors[2].field == "sandbox.allowed_syscalls[1]"
            && set.errors[2].message.contains("\"bpf\"")
    );
    assert!(set.get("doc-bot").is_some());
    assert!(
        SpecSet::load_dir(&dir.path().join("missing"))
            .unwrap()
            .specs
            .is_empty()
    );
}

#[test]
fn the_committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/agent-spec.schema.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&agent_spec_schema()).unwrap()
    );
    if std::env::var_os("FLEET_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/agent-spec.schema.json is out of date: run `FLEET_UPDATE_SCHEMAS=1 cargo test -p fleet-core the_committed_schema_is_current` and commit it"
    );
    assert!(jsonschema::validator_for(&agent_spec_schema()).is_ok());
}

proptest! {
    /// No input makes the loader panic (the fuzz target explores further).
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load("a", &text);
    }

    /// Arbitrary mappings of known keys to arbitrary scalars never panic and errors are located.
    #[test]
    fn arbitrary_values_never_panic(values in proptest::collection::vec((0..8usize, "[a-z0-9 :\\[\\]{}-]{0,12}"), 0..8)) {
        let keys = ["name", "role", "model", "max_tokens", "timeout", "cost_budget", "sandbox", "allowed_syscalls"];
        let text: String = values.iter().map(|(k, v)| format!("{}: {v}\n", keys[*k])).collect();
        if let Err(ds) = load("a", &text) {
            for d in &ds {
                prop_assert!(d.file.ends_with("a.yaml"));
            }
        }
    }
}

#[test]
fn writable_paths_that_escape_the_project_are_refused_where_nothing_would_confine_them() {
    let spec = |landlock: &str, writable: &str| {
        format!(
            "name: w\nrole: r\nmodel: m\nsandbox:\n  landlock: {landlock}\n  writable: [{writable}]\n"
        )
    };
    assert_eq!(
        errors("w", &spec("required", "\"/\"")),
        vec![
            "agents/w.yaml:6:14: sandbox.writable[0]: \"/\" makes the whole filesystem writable, which no worker needs: name the directories under the project it writes (such as \"workspace\")"
        ]
    );
    assert_eq!(
        errors("w", &spec("off", "workspace, /srv/data, ../sibling")),
        vec![
            "agents/w.yaml:6:25: sandbox.writable[1]: \"/srv/data\" is outside the project, and with `landlock: off` nothing confines the worker's writes: name a path under the project, or set `landlock: required`",
            "agents/w.yaml:6:36: sandbox.writable[2]: \"../sibling\" is outside the project, and with `landlock: off` nothing confines the worker's writes: name a path under the project, or set `landlock: required`",
        ]
    );
    // Under Landlock a path outside the project is confined like any other.
    assert!(load("w", &spec("required", "workspace, /srv/data")).is_ok());
    assert!(load("w", &spec("off", "workspace")).is_ok());
}

#[test]
fn a_spec_file_past_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut text = String::from("name: big\nrole: r\nmodel: m\n");
    while text.len() as u64 <= MAX_SPEC_BYTES {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &text).unwrap();
    let message = AgentSpec::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("is larger than 256 KiB, the most an agent spec may be"),
        "{message}"
    );
    std::fs::write(&path, b"name: big\nrole: \xff\n").unwrap();
    let message = AgentSpec::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("is not UTF-8 text (at byte 16)"),
        "{message}"
    );
}
