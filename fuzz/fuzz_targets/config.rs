//! No `fleet.toml` panics the configuration loader: every byte string either loads (and every
//! key then reads back) or gives one error that names the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

// The CLI's own loader, compiled here (the CLI is a binary, not a library).
#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/fleet-cli/src/config/mod.rs"]
mod config;

fn project() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fleet-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = project();
    let file = dir.join("fleet.toml");
    std::fs::write(&file, data).unwrap();
    match config::Config::load(dir, &|_| None, &config::Overrides::default()) {
        Ok(config) => {
            let _ = (config.get("provider.name"), config.model(), config.ask_model());
            let _ = config.provider_settings();
            let _ = (config.concurrency(), config.max_calls(), config.budget_usd());
            let _ = (config.budget_tokens(), config.fleet_budget_usd(), config.prices_file());
            let _ = config.show(&dir.join("fleet.db"));
        }
        Err(e) => assert!(e.0.contains("fleet.toml"), "{}", e.0),
    }
});
