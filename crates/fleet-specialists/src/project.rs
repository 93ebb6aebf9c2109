//! The project's tests, as a specialist runs them.

use std::path::Path;
use std::time::Duration;

use fleet_core::exec::{CommandRequest, CommandSandbox};
use fleet_providers::HostCommands;
use fleet_sandbox::worker::{RoleError, Task};

use crate::Desk;

/// How long one run of the tests may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The outcome of one run of the tests.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// Whether they passed.
    pub passed: bool,
    /// The end of their output (stdout, then stderr): at most 2 000 characters.
    pub tail: String,
}

impl Desk {
    /// Runs the task's test command (`input.test_command`: program and arguments) or, without
    /// one, the project's usual one, in the workspace.
    ///
    /// # Errors
    /// There is no test command, or it cannot be started.
    pub async fn run_tests(&self, task: &Task) -> Result<TestRun, RoleError> {
        let command = test_command(task)
            .or_else(|| detect_tests(&self.workspace))
            .ok_or(
                "no test command: pass one with `fleet send --test-command \"…\"` (or \
                 `test_command`, program and arguments, in the task's input), or work in a \
                 project whose tests fleet recognises (Cargo.toml, package.json, a Makefile with \
                 a test target, Python test_*.py files)",
            )?;
        let mut request =
            CommandRequest::new(command[0].clone(), command[1..].to_vec(), &self.workspace);
        request.timeout = TEST_TIMEOUT;
        let out = HostCommands
            .run(request)
            .await
            .map_err(|e| format!("cannot run the tests ({}): {e}", command.join(" ")))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let skip = text.chars().count().saturating_sub(2000);
        Ok(TestRun {
            passed: out.success(),
            tail: text.chars().skip(skip).collect(),
        })
    }
}

/// The task's own test command: `input.test_command`, an array of program and arguments.
fn test_command(task: &Task) -> Option<Vec<String>> {
    let command = task.input.as_ref()?.get("test_command")?;
    serde_json::from_value(command.clone())
        .ok()
        .filter(|c: &Vec<String>| !c.is_empty())
}

/// The usual test command of the project in `workspace`.
fn detect_tests(workspace: &Path) -> Option<Vec<String>> {
    let words = |w: &[&str]| Some(w.iter().map(|s| (*s).to_owned()).collect());
    if workspace.join("Cargo.toml").is_file() {
        return words(&["cargo", "test", "--quiet"]);
    }
    if workspace.join("package.json").is_file() {
        return words(&["npm", "test", "--silent"]);
    }
    if std::fs::read_to_string(workspace.join("Makefile"))
        .is_ok_and(|m| m.lines().any(|l| l.starts_with("test:")))
    {
        return words(&["make", "test"]);
    }
    let python_tests = std::fs::read_dir(workspace).ok()?.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("test_") && name.ends_with(".py")
    });
    if python_tests {
        return words(&["python3", "-m", "unittest", "-q"]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_test_command_follows_the_project() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect_tests(dir.path()), None);
        std::fs::write(dir.path().join("test_calc.py"), "").unwrap();
        assert_eq!(
            detect_tests(dir.path()).unwrap(),
            ["python3", "-m", "unittest", "-q"]
        );
        std::fs::write(
            dir.path().join("Makefile"),
            "build:\n\ttrue\ntest:\n\ttrue\n",
        )
        .unwrap();
        assert_eq!(detect_tests(dir.path()).unwrap(), ["make", "test"]);
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(detect_tests(dir.path()).unwrap()[0], "cargo");
    }
}
