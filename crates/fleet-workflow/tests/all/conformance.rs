//! One test per behaviour of `shared/specs/workflow-api.md`.

use serde_json::json;

use super::*;
use fleet_workflow::RunState;

#[tokio::test]
async fn the_returned_value_is_the_result() {
    let ran =
        run("const a = await agent('hello world!');\nreturn { a, n: [1, Infinity, NaN] };").await;
    assert_eq!(ran.summary.state, RunState::Completed, "{}", ran.error());
    assert_eq!(
        ran.summary.result,
        json!({"a": "ok:o world!", "n": [1, null, null]})
    );
    assert_eq!(ran.summary.calls.completed, 1);
}
