//! Lenient, borrowed JSON fields for typed record structs: a record is deserialized
//! straight into the fields a format reads (strings borrowed from the line when they
//! have no escapes, every other field skipped), instead of building a whole
//! `serde_json::Value` tree per record. Each wrapper accepts any JSON shape and reads a
//! shape it does not expect as "no value", exactly as looking the field up in a `Value`
//! would: a record never fails because one field has an unexpected type.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One JSON field as a scalar: absent, `null`, text, number, boolean, or an object or
/// array (`Other`, never read as a value).
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Scalar<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
    Number(serde_json::Number),
    Bool(bool),
    Other,
}

impl Scalar<'_> {
    /// Whether the field is there and not `null`.
    pub fn is_present(&self) -> bool {
        !matches!(self, Scalar::Absent | Scalar::Null)
    }

    /// The value as text: a string trimmed, placeholders NULL ([`crmflow_core::normalize::text`]);
    /// a number or boolean as JSON writes it.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Scalar::Text(s) => crmflow_core::normalize::text(s).map(Cow::Borrowed),
            Scalar::Number(n) => Some(Cow::Owned(n.to_string())),
            Scalar::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }

    /// The string of a JSON string (untrimmed); `None` for any other shape.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Text(s) => Some(s),
            _ => None,
        }
    }

    /// An integer: a JSON integer, a float without a fraction, or a string of one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Scalar::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A number, or a string of one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Scalar::Number(n) => n.as_f64(),
            Scalar::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Declares a struct of the named fields of a JSON object, each a [`Scalar`] borrowed
/// from the record, all others skipped: `scalar_fields!(Geo { city, region });`.
macro_rules! scalar_fields {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(default)]
        struct $name<'a> {
            $(
                #[serde(borrow)]
                $field: $crate::formats::json::Scalar<'a>,
            )+
        }
    };
}
pub(crate) use scalar_fields;

/// Skips the rest of an object.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of an array.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Scalar::Null, Scalar::Number))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Scalar::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|()| Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|()| Scalar::Other)
            }
        }
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// A field that is read as `T` when it is a JSON object, and as `None` otherwise.
#[derive(Debug)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Obj<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

/// A field that is read as a list of `T` when it is a JSON array, and as empty otherwise.
#[derive(Debug)]
pub struct Seq<T>(pub Vec<T>);

impl<T> Default for Seq<T> {
    fn default() -> Self {
        Seq(vec![])
    }
}

/// Deserializes any JSON value: a map or array goes to the visitor's `visit_map` /
/// `visit_seq`, everything else counts as "not this shape" (`otherwise`).
macro_rules! lenient_visitor {
    ($visitor:ident, $wrapper:ident, $expecting:literal, $otherwise:expr) => {
        impl<'de, T: Deserialize<'de>> $visitor<T> {
            fn new() -> Self {
                $visitor(PhantomData)
            }
        }
        impl<'de, T: Deserialize<'de>> Visitor<'de> for $visitor<T> {
            type Value = $wrapper<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str($expecting)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok($otherwise)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(Self::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                self.map(map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                self.seq(seq)
            }
        }
    };
}

struct ObjVisitor<T>(PhantomData<T>);
lenient_visitor!(ObjVisitor, Obj, "a JSON object", Obj(None));

impl<'de, T: Deserialize<'de>> ObjVisitor<T> {
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
    }
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Obj<T>, A::Error> {
        drain_seq(seq).map(|()| Obj(None))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor::new())
    }
}

struct SeqVisitor<T>(PhantomData<T>);
lenient_visitor!(SeqVisitor, Seq, "a JSON array", Seq(vec![]));

impl<'de, T: Deserialize<'de>> SeqVisitor<T> {
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Seq<T>, A::Error> {
        drain_map(map).map(|()| Seq(vec![]))
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seq<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Seq(items))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Seq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SeqVisitor::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default)]
    struct Inner<'a> {
        #[serde(borrow)]
        name: Scalar<'a>,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default)]
    struct Record<'a> {
        #[serde(borrow)]
        a: Scalar<'a>,
        #[serde(borrow)]
        inner: Obj<Inner<'a>>,
        #[serde(borrow)]
        list: Seq<Obj<Inner<'a>>>,
    }

    fn parse(json: &str) -> Obj<Record<'_>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn unexpected_shapes_read_as_no_value() {
        let r = parse(r#"{"a":{"x":[1,{"y":2}]},"inner":"text","list":{"k":1},"zzz":[true]}"#);
        let r = r.get().unwrap();
        assert_eq!(r.a, Scalar::Other);
        assert!(r.inner.get().is_none());
        assert!(r.list.0.is_empty());
        let r = parse(r#"{"a":null,"inner":{"name":7},"list":[1,{"name":"n"},null]}"#);
        let r = r.get().unwrap();
        assert_eq!(r.a, Scalar::Null);
        assert_eq!(r.inner.get().unwrap().name.int(), Some(7));
        let names: Vec<_> = r
            .list
            .0
            .iter()
            .map(|o| o.get().map(|i| i.name.as_str()))
            .collect();
        assert_eq!(names, [None, Some(Some("n")), None]);
        assert!(parse("[1,2]").get().is_none());
        assert!(parse("\"x\"").get().is_none());
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let plain = parse(r#"{"a":"plain"}"#);
        assert!(matches!(
            plain.get().unwrap().a,
            Scalar::Text(Cow::Borrowed("plain"))
        ));
        let escaped = parse(r#"{"a":"tab\there"}"#);
        assert_eq!(escaped.get().unwrap().a.as_str(), Some("tab\there"));
    }

    #[test]
    fn scalars_read_like_json_values() {
        fn s(json: &str) -> Scalar<'_> {
            let r: Obj<Record> = serde_json::from_str(json).unwrap();
            r.0.unwrap().a
        }
        assert_eq!(s(r#"{"a":" 42 "}"#).int(), Some(42));
        assert_eq!(s(r#"{"a":42.0}"#).int(), Some(42));
        assert_eq!(s(r#"{"a":42.5}"#).int(), None);
        assert_eq!(s(r#"{"a":"1.5"}"#).number(), Some(1.5));
        assert_eq!(s(r#"{"a":1.5}"#).text().as_deref(), Some("1.5"));
        assert_eq!(s(r#"{"a":true}"#).text().as_deref(), Some("true"));
        assert_eq!(s(r#"{"a":"(not set)"}"#).text(), None);
        assert!(!s("{}").is_present());
        assert!(!s(r#"{"a":null}"#).is_present());
        assert!(s(r#"{"a":[]}"#).is_present());
    }
}
