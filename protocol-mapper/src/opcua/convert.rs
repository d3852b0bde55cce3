//! OPC UA values to JSON and back. Pure.
//!
//! Reading: scalars become JSON scalars (64-bit integers stay exact, date-times become RFC 3339
//! strings, byte strings base64), arrays become JSON arrays (nested per dimension for
//! multi-dimensional ones) and structures become JSON objects through the OPC UA JSON encoding
//! (which leaves out fields at their default value, as that encoding's compact form does).
//! Writing: a JSON value is converted to the node's data type; a value that does not fit is an
//! error naming the type, never a silent truncation.

use base64::Engine;
use opcua::types::{
    Array, ByteString, Context, DataTypeId, DateTime, ExtensionObject, Guid, LocalizedText, NodeId,
    QualifiedName, UAString, Variant, VariantScalarTypeId,
};
use serde_json::{Map, Number, Value as Json};

/// The JSON form of a value read from a node.
pub fn to_json(value: &Variant, ctx: &Context<'_>) -> Json {
    match value {
        Variant::Empty => Json::Null,
        Variant::Boolean(v) => Json::Bool(*v),
        Variant::SByte(v) => Json::from(*v),
        Variant::Byte(v) => Json::from(*v),
        Variant::Int16(v) => Json::from(*v),
        Variant::UInt16(v) => Json::from(*v),
        Variant::Int32(v) => Json::from(*v),
        Variant::UInt32(v) => Json::from(*v),
        Variant::Int64(v) => Json::from(*v),
        Variant::UInt64(v) => Json::from(*v),
        Variant::Float(v) => float(f64::from(*v)),
        Variant::Double(v) => float(*v),
        Variant::String(v) => string(v),
        Variant::DateTime(v) => Json::String(date_time(v)),
        Variant::Guid(v) => Json::String(v.to_string()),
        Variant::StatusCode(v) => Json::String(v.to_string()),
        Variant::ByteString(v) => match &v.value {
            None => Json::Null,
            Some(bytes) => Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        },
        Variant::XmlElement(v) => Json::String(v.to_string()),
        Variant::QualifiedName(v) => Json::String(format!("{}:{}", v.namespace_index, v.name)),
        Variant::LocalizedText(v) => string(&v.text),
        Variant::NodeId(v) => Json::String(v.to_string()),
        Variant::ExpandedNodeId(v) => Json::String(v.to_string()),
        Variant::ExtensionObject(v) => structure(v, ctx),
        Variant::Variant(v) => to_json(v, ctx),
        Variant::DataValue(v) => v.value.as_ref().map_or(Json::Null, |v| to_json(v, ctx)),
        Variant::DiagnosticInfo(_) => Json::Null,
        Variant::Array(array) => {
            let items: Vec<Json> = array.values.iter().map(|v| to_json(v, ctx)).collect();
            match array.dimensions.as_deref() {
                Some(dimensions) if dimensions.len() > 1 => nest(items, dimensions),
                _ => Json::Array(items),
            }
        }
    }
}

fn float(value: f64) -> Json {
    // JSON has no NaN or infinity; null says "no number" without inventing one.
    Number::from_f64(value).map_or(Json::Null, Json::Number)
}

fn string(value: &UAString) -> Json {
    value
        .value()
        .as_ref()
        .map_or(Json::Null, |s| Json::String(s.clone()))
}

fn date_time(value: &DateTime) -> String {
    value
        .as_chrono()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A structure as the JSON object of its fields, through the OPC UA JSON encoding.
fn structure(value: &ExtensionObject, ctx: &Context<'_>) -> Json {
    use opcua::types::json::{JsonEncodable, JsonStreamWriter, JsonWriter};
    let mut buffer = Vec::new();
    let encoded = {
        let mut writer = JsonStreamWriter::new(&mut buffer as &mut dyn std::io::Write);
        value
            .encode(&mut writer, ctx)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                writer
                    .finish_document()
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
    };
    let parsed = encoded.and_then(|()| {
        serde_json::from_slice::<Json>(&buffer).map_err(|e| format!("not JSON: {e}"))
    });
    match parsed {
        Ok(Json::Object(mut object)) => object.remove("UaBody").unwrap_or(Json::Null),
        Ok(other) => other,
        Err(error) => {
            let mut object = Map::new();
            object.insert(
                "error".into(),
                Json::String(format!("structure cannot be decoded: {error}")),
            );
            Json::Object(object)
        }
    }
}

/// Row-major values into nested arrays, outermost dimension first.
fn nest(items: Vec<Json>, dimensions: &[u32]) -> Json {
    let Some((&first, rest)) = dimensions.split_first() else {
        return Json::Array(items);
    };
    if rest.is_empty() || first == 0 {
        return Json::Array(items);
    }
    let chunk = items.len() / first as usize;
    if chunk == 0 {
        return Json::Array(items);
    }
    let mut iter = items.into_iter();
    let mut out = Vec::with_capacity(first as usize);
    for _ in 0..first {
        let part: Vec<Json> = iter.by_ref().take(chunk).collect();
        out.push(nest(part, rest));
    }
    Json::Array(out)
}

/// The built-in type a node's `DataType` stands for, following the standard abstract and
/// derived types that map onto one (Enumeration is Int32, UtcTime is DateTime...).
pub fn scalar_type_of(data_type: &NodeId) -> Option<VariantScalarTypeId> {
    if let Ok(scalar) = VariantScalarTypeId::try_from(data_type) {
        return Some(scalar);
    }
    let known = [
        (DataTypeId::Enumeration, VariantScalarTypeId::Int32),
        (DataTypeId::Duration, VariantScalarTypeId::Double),
        (DataTypeId::UtcTime, VariantScalarTypeId::DateTime),
        (DataTypeId::Number, VariantScalarTypeId::Double),
        (DataTypeId::Integer, VariantScalarTypeId::Int64),
        (DataTypeId::UInteger, VariantScalarTypeId::UInt64),
        (DataTypeId::LocaleId, VariantScalarTypeId::String),
        (DataTypeId::NumericRange, VariantScalarTypeId::String),
        (DataTypeId::IntegerId, VariantScalarTypeId::UInt32),
        (DataTypeId::Counter, VariantScalarTypeId::UInt32),
        (DataTypeId::Image, VariantScalarTypeId::ByteString),
    ];
    known
        .into_iter()
        .find(|(id, _)| data_type == &NodeId::from(*id))
        .map(|(_, scalar)| scalar)
}

/// Converts a JSON value for a node of built-in type `target`; a JSON array becomes an OPC UA
/// array of that type.
pub fn from_json(value: &Json, target: VariantScalarTypeId) -> Result<Variant, String> {
    match value {
        Json::Array(items) => {
            let values = items
                .iter()
                .map(|item| scalar_from_json(item, target))
                .collect::<Result<Vec<_>, _>>()?;
            Array::new(target, values)
                .map(|array| Variant::Array(Box::new(array)))
                .map_err(|e| format!("cannot build the array: {e}"))
        }
        other => scalar_from_json(other, target),
    }
}

fn scalar_from_json(value: &Json, target: VariantScalarTypeId) -> Result<Variant, String> {
    use VariantScalarTypeId as T;
    let mismatch = || format!("{value} is not a valid {target:?}");
    Ok(match target {
        T::Boolean => Variant::Boolean(match value {
            Json::Bool(b) => *b,
            Json::Number(n) if n.as_f64() == Some(0.0) => false,
            Json::Number(n) if n.as_f64() == Some(1.0) => true,
            Json::String(s) if s == "true" => true,
            Json::String(s) if s == "false" => false,
            _ => return Err(mismatch()),
        }),
        T::SByte => Variant::SByte(integer(value, target)?),
        T::Byte => Variant::Byte(integer(value, target)?),
        T::Int16 => Variant::Int16(integer(value, target)?),
        T::UInt16 => Variant::UInt16(integer(value, target)?),
        T::Int32 => Variant::Int32(integer(value, target)?),
        T::UInt32 => Variant::UInt32(integer(value, target)?),
        T::Int64 => Variant::Int64(integer(value, target)?),
        T::UInt64 => Variant::UInt64(integer(value, target)?),
        T::Float => Variant::Float(number(value).ok_or_else(mismatch)? as f32),
        T::Double => Variant::Double(number(value).ok_or_else(mismatch)?),
        T::String => Variant::String(UAString::from(match value {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        })),
        T::LocalizedText => Variant::LocalizedText(Box::new(LocalizedText::new(
            "",
            value.as_str().ok_or_else(mismatch)?,
        ))),
        T::DateTime => Variant::DateTime(Box::new(match value {
            Json::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| format!("{value} is not an RFC 3339 date-time"))?
                .with_timezone(&chrono::Utc)
                .into(),
            Json::Number(n) => {
                let millis = n.as_i64().ok_or_else(mismatch)?;
                chrono::DateTime::from_timestamp_millis(millis)
                    .ok_or_else(mismatch)?
                    .into()
            }
            _ => return Err(mismatch()),
        })),
        T::Guid => Variant::Guid(Box::new(
            value
                .as_str()
                .and_then(|s| s.parse::<Guid>().ok())
                .ok_or_else(mismatch)?,
        )),
        T::ByteString => Variant::ByteString(
            value
                .as_str()
                .and_then(ByteString::from_base64)
                .ok_or_else(|| format!("{value} is not a base64 string"))?,
        ),
        T::NodeId => Variant::NodeId(Box::new(
            value
                .as_str()
                .and_then(|s| s.parse::<NodeId>().ok())
                .ok_or_else(mismatch)?,
        )),
        T::QualifiedName => {
            let text = value.as_str().ok_or_else(mismatch)?;
            let (namespace, name) = match text.split_once(':') {
                Some((ns, name)) if ns.parse::<u16>().is_ok() => {
                    (ns.parse::<u16>().unwrap_or_default(), name)
                }
                _ => (0, text),
            };
            Variant::QualifiedName(Box::new(QualifiedName::new(namespace, name)))
        }
        other => {
            return Err(format!(
                "writing values of type {other:?} is not supported; write a node of a \
                 built-in scalar type or an array of one"
            ));
        }
    })
}

fn number(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer of type `I`, from a JSON integer, a float without fraction or a numeric string.
fn integer<I>(value: &Json, target: VariantScalarTypeId) -> Result<I, String>
where
    I: TryFrom<i128>,
{
    let wide: Option<i128> = match value {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e19)
                    .map(|f| f as i128)
            }),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let wide = wide.ok_or_else(|| format!("{value} is not an integer ({target:?})"))?;
    I::try_from(wide).map_err(|_| format!("{wide} does not fit in {target:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::{ContextOwned, NamespaceMap};
    use serde_json::json;

    fn ctx() -> ContextOwned {
        ContextOwned::new_default(NamespaceMap::new(), Default::default())
    }

    #[test]
    fn scalars_to_json() {
        let owned = ctx();
        let ctx = owned.context();
        assert_eq!(to_json(&Variant::from(1.5f64), &ctx), json!(1.5));
        assert_eq!(to_json(&Variant::from(u64::MAX), &ctx), json!(u64::MAX));
        assert_eq!(to_json(&Variant::from(f64::NAN), &ctx), Json::Null);
        assert_eq!(to_json(&Variant::from("run"), &ctx), json!("run"));
        assert_eq!(to_json(&Variant::Empty, &ctx), Json::Null);
        let at: DateTime = chrono::DateTime::from_timestamp_millis(1_700_000_000_123)
            .expect("a valid time")
            .into();
        assert_eq!(
            to_json(&Variant::from(at), &ctx),
            json!("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(
            to_json(
                &Variant::ByteString(ByteString::from(vec![1u8, 2, 3])),
                &ctx
            ),
            json!("AQID")
        );
    }

    #[test]
    fn arrays_nest_by_dimension() {
        let owned = ctx();
        let ctx = owned.context();
        let values: Vec<Variant> = (1..=6).map(Variant::Int32).collect();
        let flat = Array::new(VariantScalarTypeId::Int32, values.clone()).expect("one type");
        assert_eq!(
            to_json(&Variant::Array(Box::new(flat)), &ctx),
            json!([1, 2, 3, 4, 5, 6])
        );
        let matrix = Array::new_multi(VariantScalarTypeId::Int32, values, vec![2u32, 3])
            .expect("dimensions match the values");
        assert_eq!(
            to_json(&Variant::Array(Box::new(matrix)), &ctx),
            json!([[1, 2, 3], [4, 5, 6]])
        );
    }

    #[test]
    fn structures_become_objects() {
        let owned = ctx();
        let ctx = owned.context();
        let range = opcua::types::Range {
            low: -5.0,
            high: 100.0,
        };
        let value = Variant::from(ExtensionObject::from_message(range));
        assert_eq!(to_json(&value, &ctx), json!({"Low": -5, "High": 100}));
        // The OPC UA JSON encoding leaves out fields at their default value.
        let range = opcua::types::Range {
            low: 0.0,
            high: 1.0,
        };
        let value = Variant::from(ExtensionObject::from_message(range));
        assert_eq!(to_json(&value, &ctx), json!({"High": 1}));
    }

    #[test]
    fn writes_convert_to_the_node_type() {
        use VariantScalarTypeId as T;
        assert_eq!(from_json(&json!(42), T::Byte), Ok(Variant::Byte(42)));
        assert_eq!(from_json(&json!("42"), T::Int64), Ok(Variant::Int64(42)));
        assert_eq!(from_json(&json!(3.0), T::Int16), Ok(Variant::Int16(3)));
        assert_eq!(
            from_json(&json!(300), T::Byte),
            Err("300 does not fit in Byte".into())
        );
        assert!(from_json(&json!(1.5), T::Int32).is_err());
        assert_eq!(from_json(&json!(2), T::Double), Ok(Variant::Double(2.0)));
        assert_eq!(from_json(&json!(1), T::Boolean), Ok(Variant::Boolean(true)));
        assert_eq!(
            from_json(&json!("AUTO"), T::String),
            Ok(Variant::from("AUTO"))
        );
        let array = from_json(&json!([1, 2]), T::UInt16).expect("an array");
        assert_eq!(
            array.as_array().map(Vec::len),
            Some(2),
            "a JSON array writes an OPC UA array"
        );
        assert!(from_json(&json!("yes"), T::Boolean).is_err());
    }

    #[test]
    fn derived_data_types_map_to_built_in_ones() {
        assert_eq!(
            scalar_type_of(&DataTypeId::Double.into()),
            Some(VariantScalarTypeId::Double)
        );
        assert_eq!(
            scalar_type_of(&DataTypeId::UtcTime.into()),
            Some(VariantScalarTypeId::DateTime)
        );
        assert_eq!(scalar_type_of(&NodeId::new(2, 5000)), None);
    }
}
