use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn layers_win_in_order_and_remember_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/fleet")).unwrap();
    std::fs::write(
            home.join(".config/fleet/config.toml"),
            "[provider]\nname = \"openai\"\nmodel = \"user-model\"\nanthropic_api_key = \"sk-user-secret\"\n[run]\nconcurrency = 3\n",
        )
        .unwrap();
    let project = dir.path().join("proj");
    std::fs::create_dir_all(project.join("sub")).unwrap();
    std::fs::write(
        project.join(PROJECT_FILE),
        "[provider]\nmodel = \"project-model\"\n[run]\nconcurrency = 5\nbudget_usd = 2.5\n",
    )
    .unwrap();
    let env = env_of(&[("HOME", home.to_str().unwrap()), ("FLEET_CONCURRENCY", "7")]);
    let flags = Overrides {
        model: Some("flag-model".into()),
        ..Overrides::default()
    };
    let config = Config::load(&project.join("sub"), &env, &flags).unwrap();
    assert_eq!(config.project.as_deref(), Some(project.as_path()));
    assert_eq!(config.get("provider.name"), Some("openai"));
    assert_eq!(config.model(), Some("flag-model"));
    assert_eq!(config.concurrency(), Some(7));
    assert_eq!(config.budget_usd(), Some(2.5));
    assert_eq!(
        config.store_path(&env),
        project.join(".fleet").join("fleet.db")
    );
    let shown = config.show(&config.store_path(&env));
    assert!(!shown.contains("sk-user-secret"), "{shown}");
    assert!(shown.contains("\"sk-u…\" (redacted, 14 chars)"), "{shown}");
    assert!(shown.contains("# flag --model"), "{shown}");
    assert!(shown.contains("# env FLEET_CONCURRENCY"), "{shown}");
    assert!(shown.contains("fleet.toml"), "{shown}");
}

#[test]
fn bad_files_name_the_file_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let none = env_of(&[]);
    let write = |text: &str| std::fs::write(dir.path().join(PROJECT_FILE), text).unwrap();
    let err = |text: &str| {
        write(text);
        Config::load(dir.path(), &none, &Overrides::default())
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("[run]\nconcurency = 3\n")
            .contains("unknown key `run.concurency`; did you mean `run.concurrency`?")
    );
    assert!(
        err("[run]\nconcurrency = \"many\"\n")
            .contains("`run.concurrency`: \"many\" is not a whole number")
    );
    assert!(
        err("[provider]\nanthropic_api_key = \"sk\"\n")
            .contains("does not belong in the project file")
    );
    assert!(err("[provider\n").contains("fleet.toml: not valid TOML"));
    assert!(err("run = 3\n").contains("`run` must be a table"));
    assert!(err("[provider]\nname = \"antropic\"\n").contains("is not one fleet has"));
    std::fs::remove_file(dir.path().join(PROJECT_FILE)).unwrap();
    let env = env_of(&[("XDG_DATA_HOME", "/data")]);
    let outside = Config::load(dir.path(), &env, &Overrides::default()).unwrap();
    assert!(outside.project.is_none());
    assert_eq!(
        outside.store_path(&env),
        PathBuf::from("/data/fleet/fleet.db")
    );
}
