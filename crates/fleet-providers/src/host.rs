//! [`HostCommands`]: runs agents' commands as ordinary child processes, with a timeout and an
//! output cap but no confinement. For trusted setups and tests; `fleet-sandbox` provides the
//! confined [`CommandSandbox`].

use std::process::Stdio;
use std::time::Instant;

use fleet_core::exec::{CommandOutput, CommandRequest, CommandSandbox, ExecError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Runs commands unconfined, with the caller's rights.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCommands;

type Captured = std::io::Result<(Vec<u8>, u64)>;

async fn read_capped(
    mut from: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, dropped));
        }
        let room = limit.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
        dropped += (n - room) as u64;
    }
}

impl CommandSandbox for HostCommands {
    fn is_confined(&self) -> bool {
        false
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, ExecError> {
        let started = Instant::now();
        let program = request.program.clone();
        let io = |source| ExecError::Io {
            program: program.clone(),
            source,
        };
        let mut child = tokio::process::Command::new(&request.program)
            .args(&request.args)
            .current_dir(&request.cwd)
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .stdin(if request.stdin.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so that a timeout kills whatever it started too (a
            // grandchild would otherwise keep the output pipes open).
            .process_group(0)
            .spawn()
            .map_err(|source| ExecError::Spawn {
                program: program.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let input = request.stdin.clone();
            tokio::spawn(async move {
                // A program that exits without reading its input is not an error.
                let _ = stdin.write_all(&input).await;
            });
        }
        let limit = request.output_limit;
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_capped(s, limit)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_capped(s, limit)));
        let (status, timed_out) = match tokio::time::timeout(request.timeout, child.wait()).await {
            Ok(status) => (status.map_err(io)?, false),
            Err(_) => {
                if let Some(pid) = child
                    .id()
                    .and_then(|id| rustix::process::Pid::from_raw(id as i32))
                {
                    // Best effort: the group may already be gone.
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                child.start_kill().map_err(io)?;
                (child.wait().await.map_err(io)?, true)
            }
        };
        let collect = |task: Option<tokio::task::JoinHandle<Captured>>| async move {
            match task {
                Some(t) => t.await.ok().and_then(Result::ok).unwrap_or_default(),
                None => (Vec::new(), 0),
            }
        };
        let (stdout, dropped_out) = collect(stdout).await;
        let (stderr, dropped_err) = collect(stderr).await;
        use std::os::unix::process::ExitStatusExt;
        Ok(CommandOutput {
            code: status.code(),
            signal: status.signal(),
            timed_out,
            stdout,
            stderr,
            dropped: dropped_out + dropped_err,
            duration: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_captures_caps_and_times_out() {
        let dir = std::env::temp_dir();
        let mut req = CommandRequest::new(
            "sh",
            vec!["-c".into(), "printf hello; printf oops >&2; exit 3".into()],
            &dir,
        );
        let out = HostCommands.run(req.clone()).await;
        let out = out.ok().unwrap_or_else(|| CommandOutput {
            code: None,
            signal: None,
            timed_out: false,
            stdout: vec![],
            stderr: vec![],
            dropped: 0,
            duration: Duration::ZERO,
        });
        assert_eq!(
            (out.code, out.stdout.as_slice(), out.stderr.as_slice()),
            (Some(3), &b"hello"[..], &b"oops"[..])
        );

        req.args = vec!["-c".into(), "head -c 10000 /dev/zero".into()];
        req.output_limit = 100;
        let out = HostCommands.run(req.clone()).await.ok();
        assert_eq!(
            out.as_ref().map(|o| (o.stdout.len(), o.dropped)),
            Some((100, 9900))
        );

        req.args = vec!["-c".into(), "sleep 5".into()];
        req.timeout = Duration::from_millis(100);
        let out = HostCommands.run(req.clone()).await.ok();
        assert_eq!(
            out.as_ref().map(|o| (o.timed_out, o.signal)),
            Some((true, Some(9)))
        );

        req.program = "/nonexistent/program".into();
        assert!(matches!(
            HostCommands.run(req).await,
            Err(ExecError::Spawn { .. })
        ));
    }
}
