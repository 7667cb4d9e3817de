//! `get_by_uid` without building the whole file as a `serde_json::Value` tree.
//!
//! Every `PatCheckSynapse` reads the store, and parsing all of it into `Value`s (a map and a string
//! per field of every entry) was 57% of the axon's CPU per request (BENCHMARKS.md). This walks the
//! same bytes with a visitor that keeps only the five fields of the first entry of each wanted uid
//! and skips the rest, while checking exactly what the full read checks — valid JSON, a list at the
//! top, every item an object — so a file the full read rejects is rejected here with the same error.
//! It reads from any `serde_json` input, so a large file is streamed through a small buffer, and
//! one pass answers a whole batch of lookups.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{PatEntry, uid_value};

/// Why the file is not a list of objects (the same texts as the full read).
pub(super) enum Shape {
    /// The top level is not a list: its JSON type.
    Top(&'static str),
    /// Item `i` is not an object: its JSON type.
    Item(usize, &'static str),
}

/// What the scan found for a uid.
#[derive(Debug, Clone)]
pub(super) enum Found {
    /// The first entry with the uid, if any.
    Entry(Option<PatEntry>),
    /// The first object with the uid repeats its `uid` key and skipped fields before the last one
    /// matched: only a full parse of that object can tell its fields (never written by gittensor).
    Unsure,
}

/// For each of `uids`, in order, the first entry with it (or [`Found::Unsure`]); or why the file
/// is structurally wrong; or a JSON syntax (or read) error. With no uids it only validates.
pub(super) fn find_many<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    uids: &[u16],
) -> Result<Result<Vec<Found>, Shape>, serde_json::Error> {
    let out = de.deserialize_any(Top { uids })?;
    de.end()?;
    Ok(out)
}

/// The top level: a list, scanned to the end.
struct Top<'u> {
    uids: &'u [u16],
}

/// What an item turned out to be.
enum Item {
    /// An object: the index of the wanted uid it has, with what was found, or `None`.
    Object(Option<(usize, Found)>),
    /// Not an object: its JSON type.
    Other(&'static str),
}

/// The visitor methods of every JSON value that is neither a list nor an object: "wrong" here.
macro_rules! scalars_are_wrong {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(<Self::Value as Wrong>::wrong("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(<Self::Value as Wrong>::wrong("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(<Self::Value as Wrong>::wrong("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(<Self::Value as Wrong>::wrong("a number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(<Self::Value as Wrong>::wrong("a string"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(<Self::Value as Wrong>::wrong("null"))
        }
    };
}

/// What a value of the wrong JSON type means at each level.
trait Wrong: Sized {
    fn wrong(kind: &'static str) -> Self;
}

impl Wrong for Result<Vec<Found>, Shape> {
    fn wrong(kind: &'static str) -> Self {
        Err(Shape::Top(kind))
    }
}

impl Wrong for Item {
    fn wrong(kind: &'static str) -> Self {
        Item::Other(kind)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Result<Vec<Found>, Shape>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON list of PAT entries")
    }

    scalars_are_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(<Self::Value as Wrong>::wrong("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found: Vec<Option<Found>> = vec![None; self.uids.len()];
        let mut done = vec![false; self.uids.len()];
        let mut left = self.uids.len();
        let mut bad = None;
        let mut i = 0usize;
        // Scan to the end even after every match: an invalid item anywhere makes the file unreadable.
        while let Some(item) = seq.next_element_seed(ItemSeed { uids: self.uids, done: &done, left })? {
            match item {
                Item::Object(Some((k, e))) if !done[k] => {
                    found[k] = Some(e);
                    done[k] = true;
                    left -= 1;
                }
                Item::Object(_) => {}
                Item::Other(kind) if bad.is_none() => bad = Some((i, kind)),
                Item::Other(_) => {}
            }
            i += 1;
        }
        Ok(match bad {
            Some((i, kind)) => Err(Shape::Item(i, kind)),
            None => Ok(found.into_iter().map(|f| f.unwrap_or(Found::Entry(None))).collect()),
        })
    }
}

/// One item of the list: the uids wanted, which of them were found already, how many are left.
struct ItemSeed<'a> {
    uids: &'a [u16],
    done: &'a [bool],
    left: usize,
}

impl ItemSeed<'_> {
    /// The index of a still-wanted uid equal to this `uid` value.
    fn wanted(&self, v: &Value) -> Option<usize> {
        let uid = uid_value(v)?;
        self.uids.iter().zip(self.done).position(|(&u, &d)| u == uid && !d)
    }
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a PAT entry")
    }

    scalars_are_wrong!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Item::wrong("a list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        if self.left == 0 {
            while map.next_entry::<Skip, Skip>()?.is_some() {}
            return Ok(Item::Object(None));
        }
        // Only the fields an entry is made of, and those only while its uid may still be wanted: no
        // map, no key strings, no copies of other miners' fields (this runs for every entry of every
        // check). A repeated key keeps its last value, as in a full parse.
        let mut fields: [Option<Value>; FIELDS.len()] = Default::default();
        // None: no uid seen yet; Some(None): not a wanted one; Some(Some(k)): uids[k]
        let mut ours: Option<Option<usize>> = None;
        let mut skipped = false;
        while let Some(Field(key)) = map.next_key::<Field>()? {
            match key {
                Some(0) => {
                    let v: Value = map.next_value()?;
                    ours = Some(self.wanted(&v));
                    fields[0] = Some(v);
                }
                Some(i) if ours != Some(None) => fields[i] = Some(map.next_value()?),
                _ => {
                    skipped |= key.is_some();
                    map.next_value::<Skip>()?;
                }
            }
        }
        let Some(Some(k)) = ours else {
            return Ok(Item::Object(None));
        };
        if skipped {
            return Ok(Item::Object(Some((k, Found::Unsure))));
        }
        let mut kept = Map::new();
        for (name, v) in FIELDS.iter().zip(fields) {
            if let Some(v) = v {
                kept.insert((*name).to_string(), v);
            }
        }
        Ok(Item::Object(Some((k, Found::Entry(PatEntry::from_object(&kept))))))
    }
}

/// The keys an entry is made of; `uid` first.
const FIELDS: [&str; 5] = ["uid", "hotkey", "pat", "github_id", "stored_at"];

/// A key of an entry: its index in [`FIELDS`], or `None` for any other key.
struct Field(Option<usize>);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Field, E> {
                Ok(Field(FIELDS.iter().position(|f| *f == k)))
            }
        }
        // the same string parser a `String` key goes through
        d.deserialize_str(V)
    }
}

/// Any JSON value, parsed and dropped. Not `serde::de::IgnoredAny`: serde_json skips those with a
/// laxer scanner whose errors differ (e.g. a truncated number), and a file must be rejected with
/// the same error as the full read. `deserialize_any` runs the very parser `Value` uses.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}
