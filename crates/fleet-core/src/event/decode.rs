//! How an [`Event`] is read. serde's derived decoding of an internally tagged enum buffers
//! each object into an intermediate tree before it looks for the tag, and a store reads its
//! whole log back through it (a resume replays every event of the run). The store writes the
//! tag first, so it is read first here and the rest of the object goes straight into the
//! variant's fields; an object whose `type` comes later (written by hand or by another tool)
//! is buffered and read the same way.

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{Event, Tag, from_fields};

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

/// An object key: the tag's, or another (kept, for the buffered way).
enum Key {
    Type,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(if v == "type" {
                    Key::Type
                } else {
                    Key::Other(v.to_owned())
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event: an object with a `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        match map.next_key::<Key>()? {
            None => Err(de::Error::missing_field("type")),
            Some(Key::Type) => {
                let tag = map.next_value::<Tag>()?;
                from_fields(tag, MapAccessDeserializer::new(map))
            }
            Some(Key::Other(first)) => {
                let mut object = serde_json::Map::new();
                object.insert(first, map.next_value()?);
                while let Some(key) = map.next_key::<String>()? {
                    object.insert(key, map.next_value()?);
                }
                let tag = object
                    .remove("type")
                    .ok_or_else(|| de::Error::missing_field("type"))?;
                let tag = Tag::deserialize(tag).map_err(de::Error::custom)?;
                from_fields(tag, serde_json::Value::Object(object)).map_err(de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Event;
    use crate::id::WorkUnitId;
    use crate::work_unit::WorkUnitState;

    #[test]
    fn the_tag_may_come_first_or_anywhere_and_unknown_ones_are_named() {
        let unit = WorkUnitId::new();
        let first = format!(
            r#"{{"type":"work_unit_state_changed","work_unit_id":"{unit}","state":"running","at":"2026-12-06T03:15:17Z","extra":1}}"#
        );
        let later = format!(
            r#"{{"work_unit_id":"{unit}","state":"running","type":"work_unit_state_changed","at":"2026-12-06T03:15:17Z"}}"#
        );
        let a: Event = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}"));
        let b: Event = serde_json::from_str(&later).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        assert!(matches!(
            a,
            Event::WorkUnitStateChanged { work_unit_id, state: WorkUnitState::Running, error: None, .. }
                if work_unit_id == unit
        ));
        // Round trip of what the store writes.
        let written = serde_json::to_string(&a).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Event>(&written).ok(), Some(a));

        let unknown = serde_json::from_str::<Event>(r#"{"type":"work_unit_exploded","at":"x"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            unknown.contains("unknown variant `work_unit_exploded`"),
            "{unknown}"
        );
        let missing = serde_json::from_str::<Event>(r#"{"state":"running"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("missing field `type`"), "{missing}");
        let bad_field = serde_json::from_str::<Event>(&format!(
            r#"{{"type":"work_unit_state_changed","work_unit_id":"{unit}","state":"sideways","at":"2026-12-06T03:15:17Z"}}"#
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(bad_field.contains("sideways"), "{bad_field}");
    }
}
