//! A coding-agent CLI's process: JSON lines on its stdio, the tail of its stderr, its end.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use fleet_core::agent::AgentError;

use super::GRACE;

/// A coding-agent CLI's process, spoken to in JSON lines on its stdio.
#[derive(Debug)]
pub(crate) struct CliProcess {
    /// What to call it in errors (`claude`, `codex app-server`).
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    tail: Option<tokio::task::JoinHandle<String>>,
    /// Why it can take no more work.
    pub(crate) ended: Option<String>,
}

impl CliProcess {
    /// Starts `command` with piped stdio (killed when dropped); `cannot_start` words the error.
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut tokio::process::Command,
        cannot_start: impl FnOnce(&std::io::Error) -> AgentError,
    ) -> Result<Self, AgentError> {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| cannot_start(&e))?;
        let missing = |what: &str| AgentError::Worker(format!("{name} has no {what}"));
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| missing("stderr"))?;
        Ok(Self {
            name,
            child,
            stdin: Some(stdin),
            lines: BufReader::new(stdout).lines(),
            tail: Some(stderr_tail(stderr)),
            ended: None,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Writes `message` as one line.
    pub(crate) async fn write(
        &mut self,
        message: &impl serde::Serialize,
    ) -> Result<(), AgentError> {
        let mut line = serde_json::to_vec(message).unwrap_or_default();
        line.push(b'\n');
        let name = self.name;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| AgentError::Worker(format!("{name}'s input is closed")))?;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| AgentError::Worker(format!("cannot write to {name}: {e}")))
    }

    /// Whether it can take a turn; if not, why (as the turn's error).
    pub(crate) fn usable(&self) -> Result<(), AgentError> {
        match &self.ended {
            Some(why) => Err(AgentError::Worker(format!(
                "the {} session ended: {why}",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// After a turn: one that failed leaves the session unusable (its conversation is in an
    /// unknown state).
    pub(crate) fn settle<T>(&mut self, result: &Result<T, AgentError>) {
        if result.is_err() && self.ended.is_none() {
            self.ended = Some("a turn failed".into());
        }
    }

    /// Closes its input (a CLI that reads more from an open stdin then goes on without).
    pub(crate) fn close_input(&mut self) {
        self.stdin = None;
    }

    /// The next line; `None` at the end of its output.
    pub(crate) async fn next_line(&mut self) -> Result<Option<String>, AgentError> {
        self.lines
            .next_line()
            .await
            .map_err(|e| AgentError::Worker(format!("reading {}'s output: {e}", self.name)))
    }

    /// It stopped talking: the error says so with its exit status and stderr tail.
    pub(crate) async fn died(&mut self) -> AgentError {
        self.stdin = None;
        let status = match self.child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let tail = match self.tail.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        let why = with_tail(
            format!("{} ended before its turn did ({status})", self.name),
            &tail,
        );
        self.ended = Some(why.clone());
        AgentError::Worker(why)
    }

    /// Kills it: it can take no more work, for `why`.
    pub(crate) async fn kill(&mut self, why: &str) {
        self.ended = Some(why.to_owned());
        self.stdin = None;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Closes its input and gives it a moment to exit before it is killed.
    pub(crate) async fn close(mut self) {
        self.stdin = None;
        if tokio::time::timeout(GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The last lines a CLI wrote to stderr, read in the background.
pub(crate) fn stderr_tail(
    mut stderr: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    })
}

/// `message` and, when there is one, the stderr tail after a colon.
pub(crate) fn with_tail(message: String, tail: &str) -> String {
    if tail.trim().is_empty() {
        message
    } else {
        format!("{message}: {}", tail.trim())
    }
}
