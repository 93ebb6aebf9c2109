//! [`HostCommands`]: runs agents' commands as ordinary child processes, with a timeout and an
//! output cap but no confinement. For trusted setups and tests; `fleet-sandbox` provides the
//! confined [`CommandSandbox`].

use fleet_core::exec::{CommandOutput, CommandRequest, CommandSandbox, ExecError, run_captured};

/// Runs commands unconfined, with the caller's rights.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCommands;

impl CommandSandbox for HostCommands {
    fn is_confined(&self) -> bool {
        false
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, ExecError> {
        let mut command = tokio::process::Command::new(&request.program);
        command
            .args(&request.args)
            .envs(request.env.iter().map(|(k, v)| (k, v)));
        run_captured(command, &request, true).await
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
