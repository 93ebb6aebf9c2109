//! Provider benchmarks: SSE decoding throughput on Anthropic-format frames, and the agent loop's
//! own overhead per model round trip with an instant provider.
//!
//! Targets on the 2-core reference machine: ≥ 200 MB/s of Anthropic frames decoded into
//! normalized events; ≤ 20 µs of agent-loop overhead per model round trip (recording included).
//! Run: `cargo bench -p fleet-benches --bench providers`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
use fleet_core::command::WorkUnitDraft;
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::provider::{
    CancelToken, Capabilities, EventStream, ModelRequest, Provider, ProviderError, StopReason,
    StreamEvent, ToolSpec,
};
use fleet_core::store::memory::MemoryStore;
use fleet_core::sync::BoxFuture;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::WorkUnitKind;
use fleet_providers::model::decode;
use fleet_providers::runner::agent::ModelAgentRunner;
use fleet_providers::runner::agent::tools::{Tool, ToolContext, ToolOutput};
use fleet_providers::transport::sse;
use serde_json::{Value, json};

/// A realistic streamed answer: `deltas` text deltas of about 60 characters, as Anthropic sends.
fn anthropic_body(deltas: usize) -> Vec<u8> {
    let mut body = String::new();
    body.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":1200,\"output_tokens\":1}}}\n\n");
    body.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..deltas {
        if i % 200 == 0 {
            body.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
        body.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"The function parses its input line {i} and returns early when\"}}}}\n\n"
        ));
    }
    body.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    body.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4000}}\n\n");
    body.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    body.into_bytes()
}

fn sse_decoding(c: &mut Criterion) {
    let body = anthropic_body(20_000);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("frames", |b| {
        b.iter(|| {
            // Fed in 16 KiB chunks, as a socket delivers them.
            let mut decoder = sse::SseDecoder::default();
            let mut n = 0usize;
            for chunk in body.chunks(16 * 1024) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    n += frame.data.len();
                }
            }
            n
        });
    });
    group.bench_function("anthropic_events", |b| {
        b.iter(|| decode::anthropic(&body).unwrap().len());
    });
    group.finish();
}

/// Answers at once: a tool call for the first `tool_rounds` requests of a conversation, then
/// text. Usage is fixed.
#[derive(Clone)]
struct Instant {
    tool_rounds: usize,
}

impl Provider for Instant {
    fn name(&self) -> &str {
        "instant"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted().with_free(true)
    }
    async fn stream(
        &self,
        request: ModelRequest,
        _cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let round = request.messages.len() / 2;
        let usage = StreamEvent::Usage {
            usage: TokenUsage {
                input: 20,
                output: 5,
                ..TokenUsage::default()
            },
        };
        let events = if round < self.tool_rounds {
            vec![
                StreamEvent::ToolCallEnd {
                    index: 0,
                    id: format!("t{round}"),
                    name: "noop".into(),
                    input: json!({}),
                },
                usage,
                StreamEvent::Done {
                    stop_reason: StopReason::ToolUse,
                },
            ]
        } else {
            vec![
                StreamEvent::TextDelta { text: "ok".into() },
                usage,
                StreamEvent::Done {
                    stop_reason: StopReason::EndTurn,
                },
            ]
        };
        Ok(Box::pin(futures_util::stream::iter(
            events.into_iter().map(Ok),
        )))
    }
}

struct Noop(AtomicU32);
impl Tool for Noop {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "noop".into(),
            description: "does nothing".into(),
            input_schema: json!({"type": "object"}),
        }
    }
    fn call<'a>(&'a self, _input: Value, _ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { ToolOutput::ok("done") })
    }
}

fn agent_loop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A fresh thread every 1,000 calls, as a workflow run of that size has: one thread growing
    // for the whole benchmark would measure hash-set cache misses of a million-activity thread.
    let fresh = || async {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let journal = Journal::create(store, None).await.unwrap();
        let (_, root) = journal
            .start_turn(None, WorkUnitDraft::new(WorkUnitKind::Workflow))
            .await
            .unwrap();
        (journal, root)
    };
    let mut group = c.benchmark_group("agent_loop");
    for tool_rounds in [0usize, 9] {
        let runner = ModelAgentRunner::builder(Instant { tool_rounds })
            .tool(Arc::new(Noop(AtomicU32::new(0))))
            .build();
        // Per model round trip: a call makes tool_rounds + 1 requests.
        group.throughput(Throughput::Elements(tool_rounds as u64 + 1));
        group.bench_function(format!("call_with_{tool_rounds}_tool_rounds"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = std::time::Instant::now();
                    let (mut journal, mut root) = fresh().await;
                    for i in 0..iters {
                        if i % 1000 == 999 {
                            (journal, root) = fresh().await;
                        }
                        let out = runner
                            .run(
                                AgentCall::new("bench"),
                                CallContext::new(journal.clone(), root),
                            )
                            .await
                            .unwrap();
                        assert_eq!(out.model_requests as usize, tool_rounds + 1);
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sse_decoding, agent_loop);
criterion_main!(benches);
