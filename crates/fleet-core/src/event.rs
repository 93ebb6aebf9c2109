//! Events: the only way state changes. Past tense, appended, never edited.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::activity::Activity;
use crate::id::{ThreadId, TurnId, WorkUnitId};
use crate::money::Usd;
use crate::usage::TokenUsage;
use crate::work_unit::{WorkUnitRecord, WorkUnitState};

mod decode;

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TurnState {
    /// Still going.
    Running,
    /// Answered.
    Completed,
    /// Ended with an error.
    Failed,
    /// Stopped on purpose.
    Cancelled,
    /// Its process went away.
    Interrupted,
}

impl TurnState {
    /// Whether the turn is over.
    #[must_use]
    pub fn is_finished(self) -> bool {
        match self {
            Self::Running => false,
            Self::Completed | Self::Failed | Self::Cancelled | Self::Interrupted => true,
        }
    }
}

/// A budget ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetAlert {
    /// Which budget, e.g. `run`, `phase:verify`, `agent:doc-bot`.
    pub budget: String,
    /// Its output-token limit, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_tokens: Option<u64>,
    /// Its dollar limit, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_usd: Option<Usd>,
    /// Output tokens spent when it ran out.
    pub spent_tokens: u64,
    /// Dollars spent when it ran out.
    pub spent_usd: Usd,
    /// The unit whose call was refused or stopped, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_unit_id: Option<WorkUnitId>,
    /// When.
    pub at: Timestamp,
}

/// Declares [`Event`] and, from the same list, how each variant is read (see
/// `event/decode.rs`): a struct of the variant's fields, the tags, and `from_fields`, which
/// reads the variant a tag names from the rest of its object.
macro_rules! events {
    ($(#[$meta:meta])* pub enum Event {
        $($(#[$vattr:meta])* $tag:ident { $($(#[$attr:meta])* $field:ident: $ty:ty),* $(,)? }),* $(,)?
    }) => {
        $(#[$meta])*
        pub enum Event {
            $($(#[$vattr])* $tag { $($(#[$attr])* $field: $ty),* }),*
        }

        /// The variants' `type` tags.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tag {
            $($tag),*
        }

        /// Each variant's fields as a struct of their own, read as the variant reads them.
        mod fields {
            use super::*;
            $(
                #[derive(Deserialize)]
                pub(super) struct $tag {
                    $($(#[$attr])* pub(super) $field: $ty),*
                }
            )*
        }

        /// The event `tag` names, from the rest of its object.
        fn from_fields<'de, D: serde::Deserializer<'de>>(
            tag: Tag,
            fields: D,
        ) -> Result<Event, D::Error> {
            Ok(match tag {
                $(Tag::$tag => {
                    let f = fields::$tag::deserialize(fields)?;
                    Event::$tag { $($field: f.$field),* }
                })*
            })
        }
    };
}

events! {
/// Something that happened to a thread.
///
/// The large payloads (a work unit's record, an activity) are boxed: an event is then 120
/// bytes instead of 432, and a fan-out holds tens of thousands of them in queues and logs.
///
/// Written with its `type` first, and read tag first (see `event/decode.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The thread began. Always its first event.
    ThreadCreated {
        /// The thread.
        thread_id: ThreadId,
        /// A title for lists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// A turn began, with its root work unit.
    TurnStarted {
        /// The turn.
        turn_id: TurnId,
        /// The request that started it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        /// Its root work unit (no parent; a primary agent or a workflow).
        root: Box<WorkUnitRecord>,
        /// When.
        at: Timestamp,
    },
    /// A turn ended.
    TurnCompleted {
        /// The turn.
        turn_id: TurnId,
        /// How it ended.
        state: TurnState,
        /// When.
        at: Timestamp,
    },
    /// A work unit appeared or changed.
    WorkUnitUpserted {
        /// What is now true of it.
        work_unit: Box<WorkUnitRecord>,
    },
    /// A work unit moved to another state: the change alone, not the whole unit (a call makes
    /// two or three of these, and they are most of a fan-out's log).
    WorkUnitStateChanged {
        /// The unit.
        work_unit_id: WorkUnitId,
        /// Its new state.
        state: WorkUnitState,
        /// Why it failed or stopped, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// An activity happened.
    ActivityAppended {
        /// It.
        activity: Box<Activity>,
    },
    /// A unit used tokens (a delta, added to what it used before).
    UsageRecorded {
        /// The unit that used them.
        work_unit_id: WorkUnitId,
        /// The model that was used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The tokens.
        usage: TokenUsage,
        /// Their price; `None` when the model's price is unknown.
        #[serde(default)]
        cost: Option<Usd>,
        /// When.
        at: Timestamp,
    },
    /// A budget ran out.
    BudgetExceeded {
        /// Which and by how much.
        alert: BudgetAlert,
    },
    /// The thread went back to an earlier turn: later turns, their work units (with every
    /// descendant) and their activities are gone from the read model.
    ThreadReverted {
        /// The last turn kept; `None` keeps no turn.
        #[serde(default)]
        to_turn: Option<TurnId>,
        /// When.
        at: Timestamp,
    },
}
}

impl Event {
    /// The event's `type` as written in JSON (`work_unit_upserted`, …).
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ThreadCreated { .. } => "thread_created",
            Self::TurnStarted { .. } => "turn_started",
            Self::TurnCompleted { .. } => "turn_completed",
            Self::WorkUnitUpserted { .. } => "work_unit_upserted",
            Self::WorkUnitStateChanged { .. } => "work_unit_state_changed",
            Self::ActivityAppended { .. } => "activity_appended",
            Self::UsageRecorded { .. } => "usage_recorded",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::ThreadReverted { .. } => "thread_reverted",
        }
    }
}

/// An event as stored: where it stands in its thread's stream and in the whole store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Its place in the whole store, from 1, increasing across all streams.
    pub position: u64,
    /// Its stream.
    pub thread_id: ThreadId,
    /// Its place in the stream, from 1.
    pub version: u64,
    /// When the store took it.
    pub recorded_at: Timestamp,
    /// What happened.
    pub event: Event,
}
