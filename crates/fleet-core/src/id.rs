//! Identifiers: UUIDv7 newtypes, one type per kind of thing.
//!
//! Ids that come from outside (CLI flags, stored rows, JSON) are turned into values by exactly one
//! function per type, [`ThreadId::parse`] and its siblings, which [`FromStr`]
//! and serde both call. An id therefore has one canonical spelling everywhere: lowercase,
//! hyphenated.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// An id given from outside could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: {reason}")]
pub struct IdError {
    /// The kind of id that was expected, e.g. `work unit`.
    pub kind: &'static str,
    /// The text that was given (shortened when very long).
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// Reads a UUID written in any of the usual ways (hyphenated, simple, braced, `urn:uuid:`, any
/// case, surrounded by white space) and refuses the nil UUID, which never names anything.
fn parse_uuid(kind: &'static str, input: &str) -> Result<Uuid, IdError> {
    let trimmed = input.trim();
    let error = |reason| IdError {
        kind,
        input: trimmed.chars().take(80).collect(),
        reason,
    };
    let uuid = Uuid::try_parse(trimmed)
        .map_err(|_| error("expected a UUID such as 0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0b"))?;
    if uuid.is_nil() {
        return Err(error("the nil UUID names nothing"));
    }
    Ok(uuid)
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(Uuid);

        // The UUID's bytes in order, compared as one big-endian number: the same order as
        // comparing the bytes, in two instructions instead of a byte loop (read models keep
        // their units in maps keyed by id, and look them up several times per event).
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.as_u128().cmp(&other.0.as_u128())
            }
        }

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Reads an id given from outside: the one function every path uses.
            ///
            /// # Errors
            /// [`IdError`] when the text is not a UUID or is the nil UUID.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                parse_uuid($kind, input).map(Self)
            }

            /// Wraps an existing UUID (for example one decoded from a binary column).
            ///
            /// # Errors
            /// [`IdError`] for the nil UUID.
            pub fn from_uuid(uuid: Uuid) -> Result<Self, IdError> {
                if uuid.is_nil() {
                    return Err(IdError { kind: $kind, input: uuid.to_string(), reason: "the nil UUID names nothing" });
                }
                Ok(Self(uuid))
            }

            /// The UUID inside.
            #[must_use]
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The short form people read and type: the id's last 8 hex digits, from its
            /// random part (ids made in the same millisecond share their start, never their
            /// end). Unique in practice: two of 1 000 ids share one with odds of 1 in 8 600.
            #[must_use]
            pub fn short(&self) -> String {
                format!("{:08x}", self.0.as_u128() & 0xffff_ffff)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut buf = Uuid::encode_buffer();
                serializer.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "format": "uuid" })
            }
        }
    };
}

define_id!(
    /// A conversation: a sequence of turns. Also the event stream its events are appended to.
    ThreadId, "thread"
);
define_id!(
    /// One turn of a thread: a user request and everything done to answer it.
    TurnId, "turn"
);
define_id!(
    /// One unit of delegated or primary work, a node in a turn's work-unit tree.
    WorkUnitId, "work unit"
);
define_id!(
    /// One activity (tool call, message, log line, phase marker) of a thread.
    ActivityId, "activity"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_normalizes_to_one() {
        let id = WorkUnitId::new();
        let canonical = id.to_string();
        let simple = id.as_uuid().simple().to_string().to_uppercase();
        for spelling in [
            canonical.clone(),
            canonical.to_uppercase(),
            format!("  {canonical}\n"),
            format!("{{{canonical}}}"),
            format!("urn:uuid:{canonical}"),
            simple,
        ] {
            let parsed = WorkUnitId::parse(&spelling).unwrap();
            assert_eq!(parsed, id, "{spelling}");
            assert_eq!(parsed.to_string(), canonical);
        }
    }

    #[test]
    fn ids_order_as_their_bytes_and_their_text() {
        let ids: Vec<WorkUnitId> = [
            "00000000-0000-0000-0000-000000000002",
            "00000000-0000-0000-0000-000000000100",
            "0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0b",
            "0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0c",
            "8000000f-0000-0000-0000-000000000000",
            "ff000000-0000-0000-0000-000000000001",
        ]
        .iter()
        .map(|s| WorkUnitId::parse(s).unwrap())
        .collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids {
                let by_bytes = a.as_uuid().as_bytes().cmp(b.as_uuid().as_bytes());
                assert_eq!(a.cmp(b), by_bytes, "{a} vs {b}");
                assert_eq!(a.cmp(b), a.to_string().cmp(&b.to_string()), "{a} vs {b}");
            }
            assert!(ids[..i].iter().all(|earlier| earlier < a));
        }
    }

    #[test]
    fn serde_goes_through_parse() {
        let id = WorkUnitId::new();
        let upper = format!("\"{}\"", id.to_string().to_uppercase());
        let back: WorkUnitId = serde_json::from_str(&upper).unwrap();
        assert_eq!(back, id);
        assert_eq!(serde_json::to_string(&back).unwrap(), format!("\"{id}\""));
    }

    #[test]
    fn bad_ids_are_named() {
        let err = ThreadId::parse("not-a-uuid").unwrap_err();
        assert_eq!(err.kind, "thread");
        assert!(
            err.to_string()
                .starts_with("invalid thread id \"not-a-uuid\""),
            "{err}"
        );
        let nil = TurnId::parse("00000000-0000-0000-0000-000000000000").unwrap_err();
        assert_eq!(nil.reason, "the nil UUID names nothing");
        assert!(serde_json::from_str::<ActivityId>("\"x\"").is_err());
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = ActivityId::new();
        let b = ActivityId::new();
        assert!(a < b);
    }

    #[test]
    fn the_short_form_is_the_end_of_the_id() {
        let id = ThreadId::parse("01a1fdb2-0b3c-7e11-9a2b-3c4dc962c6e2").unwrap();
        assert_eq!(id.short(), "c962c6e2");
        assert!(id.to_string().ends_with(&id.short()));
        // Made together, ids share their start and differ at the end.
        let (a, b) = (ThreadId::new(), ThreadId::new());
        assert_ne!(a.short(), b.short());
    }
}
