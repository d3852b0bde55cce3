//! Modbus data types: registers and coils to JSON values and back. Pure.
//!
//! Registers travel high byte first. The names follow Connectware (and Node's Buffer readers
//! over the bytes as received): `BE` reads those bytes big-endian, `LE` little-endian (the whole
//! value's bytes reversed), and the `WS` variants swap the order of the 16-bit words first, as
//! many PLCs store 32-bit values low word first.

use base64::Engine as _;
use commissioning::model::ModbusDataType as T;
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> CodecError {
    CodecError::Invalid(message.into())
}

/// Bytes one value of a type occupies, `None` for types that take the whole range.
fn width(data_type: T) -> Option<usize> {
    match data_type {
        T::Int16Be | T::Int16Le | T::Uint16Be | T::Uint16Le => Some(2),
        T::Int32Be | T::Int32Le | T::Uint32Be | T::Uint32Le => Some(4),
        T::FloatBe | T::FloatLe | T::FloatBeWs | T::FloatLeWs => Some(4),
        T::Int64Be | T::Int64Le | T::Uint64Be | T::Uint64Le | T::DoubleBe | T::DoubleLe => Some(8),
        T::Raw | T::Base64 | T::Boolean | T::StringBe | T::StringLe => None,
    }
}

fn words_to_bytes(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// The bytes of one value in big-endian order, ready for `from_be_bytes`. Each reordering is its
/// own inverse, so encoding uses the same function to go back to the wire order.
fn normalise(data_type: T, chunk: &[u8]) -> Vec<u8> {
    let mut bytes = chunk.to_vec();
    match data_type {
        T::FloatBeWs => swap_words(&mut bytes),
        T::FloatLeWs => {
            swap_words(&mut bytes);
            bytes.reverse();
        }
        T::Int16Le
        | T::Uint16Le
        | T::Int32Le
        | T::Uint32Le
        | T::Int64Le
        | T::Uint64Le
        | T::FloatLe
        | T::DoubleLe => bytes.reverse(),
        _ => {}
    }
    bytes
}

/// Reverses the order of the 16-bit words, keeping the bytes inside each.
fn swap_words(bytes: &mut [u8]) {
    let words: Vec<[u8; 2]> = bytes.chunks_exact(2).rev().map(|c| [c[0], c[1]]).collect();
    for (slot, word) in bytes.chunks_exact_mut(2).zip(words) {
        slot.copy_from_slice(&word);
    }
}

fn number(data_type: T, be: &[u8]) -> Json {
    let array = |n: usize| -> [u8; 8] {
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(&be[..n]);
        out
    };
    match data_type {
        T::Int16Be | T::Int16Le => json!(i16::from_be_bytes([be[0], be[1]])),
        T::Uint16Be | T::Uint16Le => json!(u16::from_be_bytes([be[0], be[1]])),
        T::Int32Be | T::Int32Le => json!(i32::from_be_bytes([be[0], be[1], be[2], be[3]])),
        T::Uint32Be | T::Uint32Le => json!(u32::from_be_bytes([be[0], be[1], be[2], be[3]])),
        T::Int64Be | T::Int64Le => json!(i64::from_be_bytes(array(8))),
        T::Uint64Be | T::Uint64Le => json!(u64::from_be_bytes(array(8))),
        T::FloatBe | T::FloatLe | T::FloatBeWs | T::FloatLeWs => {
            float(f32::from_be_bytes([be[0], be[1], be[2], be[3]]) as f64)
        }
        T::DoubleBe | T::DoubleLe => float(f64::from_be_bytes(array(8))),
        _ => Json::Null,
    }
}

/// JSON has no NaN or infinity; such readings become `null`.
fn float(value: f64) -> Json {
    serde_json::Number::from_f64(value)
        .map(Json::Number)
        .unwrap_or(Json::Null)
}

/// Decodes registers (function codes 3 and 4). Several values of a fixed-width type in the range
/// come out as an array; `None` means the type's default for registers (`raw`).
pub fn decode_registers(words: &[u16], data_type: Option<T>) -> Result<Json, CodecError> {
    let data_type = data_type.unwrap_or(T::Raw);
    let bytes = words_to_bytes(words);
    match data_type {
        T::Raw => Ok(json!(words)),
        T::Base64 => Ok(json!(
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        )),
        T::Boolean => Ok(match words {
            [one] => json!(*one != 0),
            many => json!(many.iter().map(|w| *w != 0).collect::<Vec<_>>()),
        }),
        T::StringBe | T::StringLe => {
            let mut bytes = bytes;
            if data_type == T::StringLe {
                bytes.chunks_exact_mut(2).for_each(|c| c.swap(0, 1));
            }
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            Ok(json!(String::from_utf8_lossy(&bytes[..end])))
        }
        fixed => {
            let size = width(fixed).unwrap_or(2);
            if bytes.len() < size || bytes.len() % size != 0 {
                return Err(invalid(format!(
                    "{} registers do not hold whole {fixed:?} values ({size} bytes each)",
                    words.len()
                )));
            }
            let values: Vec<Json> = bytes
                .chunks_exact(size)
                .map(|c| number(fixed, &normalise(fixed, c)))
                .collect();
            Ok(match <[Json; 1]>::try_from(values) {
                Ok([one]) => one,
                Err(many) => Json::Array(many),
            })
        }
    }
}

/// Decodes coils or discrete inputs (function codes 1 and 2): one boolean, or an array.
pub fn decode_bits(bits: &[bool]) -> Json {
    match bits {
        [one] => json!(one),
        many => json!(many),
    }
}

/// How many registers a value of `data_type` needs (for writes without an explicit length).
pub fn registers_for(data_type: T, length: u16) -> u16 {
    width(data_type)
        .map_or(length, |bytes| (bytes / 2) as u16)
        .max(1)
}

/// Encodes a JSON value into registers for function codes 6 and 16.
pub fn encode_registers(
    value: &Json,
    data_type: Option<T>,
    length: u16,
) -> Result<Vec<u16>, CodecError> {
    let data_type = data_type.unwrap_or(T::Uint16Be);
    let bytes: Vec<u8> = match data_type {
        T::Raw => {
            let items = value
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![value.clone()]);
            return items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| {
                            invalid(format!("raw registers are integers 0-65535, got {v}"))
                        })
                })
                .collect();
        }
        T::Base64 => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("base64 needs a string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| invalid(format!("invalid base64: {e}")))?
        }
        T::Boolean => {
            let b = value
                .as_bool()
                .ok_or_else(|| invalid(format!("expected true or false, got {value}")))?;
            vec![0, u8::from(b)]
        }
        T::StringBe | T::StringLe => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid(format!("expected a string, got {value}")))?;
            let capacity = usize::from(length) * 2;
            if text.len() > capacity {
                return Err(invalid(format!(
                    "{} bytes do not fit into {length} registers",
                    text.len()
                )));
            }
            let mut bytes = text.as_bytes().to_vec();
            bytes.resize(capacity, 0);
            if data_type == T::StringLe {
                bytes.chunks_exact_mut(2).for_each(|c| c.swap(0, 1));
            }
            bytes
        }
        fixed => {
            let be = number_bytes(fixed, value)?;
            // Every reordering here is its own inverse, so the same function maps back to the wire.
            normalise(fixed, &be)
        }
    };
    if bytes.len() % 2 != 0 {
        return Err(invalid(
            "an odd number of bytes does not fill whole registers",
        ));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

fn number_bytes(data_type: T, value: &Json) -> Result<Vec<u8>, CodecError> {
    let out_of_range = || invalid(format!("{value} does not fit into {data_type:?}"));
    let int = || {
        value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        })
    };
    Ok(match data_type {
        T::Int16Be | T::Int16Le => i16::try_from(int().ok_or_else(out_of_range)?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        T::Uint16Be | T::Uint16Le => u16::try_from(int().ok_or_else(out_of_range)?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        T::Int32Be | T::Int32Le => i32::try_from(int().ok_or_else(out_of_range)?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        T::Uint32Be | T::Uint32Le => u32::try_from(int().ok_or_else(out_of_range)?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        T::Int64Be | T::Int64Le => int().ok_or_else(out_of_range)?.to_be_bytes().to_vec(),
        T::Uint64Be | T::Uint64Le => value
            .as_u64()
            .ok_or_else(out_of_range)?
            .to_be_bytes()
            .to_vec(),
        T::FloatBe | T::FloatLe | T::FloatBeWs | T::FloatLeWs => {
            (value.as_f64().ok_or_else(out_of_range)? as f32)
                .to_be_bytes()
                .to_vec()
        }
        T::DoubleBe | T::DoubleLe => value
            .as_f64()
            .ok_or_else(out_of_range)?
            .to_be_bytes()
            .to_vec(),
        _ => return Err(out_of_range()),
    })
}

/// Encodes a JSON value into coils for function codes 5 and 15.
pub fn encode_bits(value: &Json) -> Result<Vec<bool>, CodecError> {
    let one = |v: &Json| match v {
        Json::Bool(b) => Ok(*b),
        Json::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
            Ok(n.as_u64() == Some(1))
        }
        other => Err(invalid(format!("a coil is true or false, got {other}"))),
    };
    match value {
        Json::Array(items) => items.iter().map(one).collect(),
        single => Ok(vec![one(single)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (registers as received, data type, value): decoding gives the value, encoding gives the
    /// registers back.
    fn table() -> Vec<(Vec<u16>, T, Json)> {
        vec![
            (vec![0xFFFE], T::Int16Be, json!(-2)),
            (vec![0xFEFF], T::Int16Le, json!(-2)),
            (vec![0xFFFE], T::Uint16Be, json!(65534)),
            (vec![0x3412], T::Uint16Le, json!(0x1234)),
            (vec![0x0001, 0x0002], T::Int32Be, json!(0x0001_0002)),
            (vec![0x0200, 0x0100], T::Int32Le, json!(0x0001_0002)),
            (vec![0xFFFF, 0xFFFE], T::Int32Be, json!(-2)),
            (vec![0xFFFF, 0xFFFF], T::Uint32Be, json!(u32::MAX)),
            (vec![0x4148, 0x0000], T::FloatBe, json!(12.5)),
            (vec![0x0000, 0x4841], T::FloatLe, json!(12.5)),
            (vec![0x0000, 0x4148], T::FloatBeWs, json!(12.5)),
            (vec![0x4841, 0x0000], T::FloatLeWs, json!(12.5)),
            (
                vec![0x4029, 0x0000, 0x0000, 0x0000],
                T::DoubleBe,
                json!(12.5),
            ),
            (
                vec![0x0000, 0x0000, 0x0000, 0x2940],
                T::DoubleLe,
                json!(12.5),
            ),
            (vec![0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], T::Int64Be, json!(-2)),
            (
                vec![0x0000, 0x0000, 0x0000, 0x0001],
                T::Int64Le,
                json!(1u64 << 56),
            ),
            (
                vec![0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF],
                T::Uint64Be,
                json!(u64::MAX),
            ),
            (vec![0x0001, 0x0002, 0x0003], T::Uint16Be, json!([1, 2, 3])),
            (vec![0x4F4B, 0x2100], T::StringBe, json!("OK!")),
            (vec![0x4B4F, 0x0021], T::StringLe, json!("OK!")),
            (vec![0x0102], T::Base64, json!("AQI=")),
            (vec![7, 8], T::Raw, json!([7, 8])),
        ]
    }

    #[test]
    fn decode_and_encode_every_type() {
        for (words, data_type, value) in table() {
            assert_eq!(
                decode_registers(&words, Some(data_type)).expect("decodes"),
                value,
                "decode {data_type:?}"
            );
            if value.is_array() && data_type != T::Raw {
                continue; // arrays of fixed-width values are read-only
            }
            let length = words.len() as u16;
            assert_eq!(
                encode_registers(&value, Some(data_type), length).expect("encodes"),
                words,
                "encode {data_type:?}"
            );
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(
            decode_registers(&[0x7FC0, 0x0000], Some(T::FloatBe)).expect("nan"),
            Json::Null,
            "NaN is null"
        );
        assert!(
            decode_registers(&[1], Some(T::Int32Be)).is_err(),
            "one register cannot hold an int32"
        );
        assert_eq!(
            decode_registers(&[0, 5], Some(T::Boolean)).expect("bools"),
            json!([false, true])
        );
        assert_eq!(decode_registers(&[0, 5], None).expect("raw"), json!([0, 5]));
        assert!(encode_registers(&json!(70000), Some(T::Int16Be), 1).is_err());
        assert!(encode_registers(&json!("x"), Some(T::FloatBe), 2).is_err());
        assert!(encode_registers(&json!("too long"), Some(T::StringBe), 2).is_err());
        assert_eq!(
            encode_registers(&json!(3.0), Some(T::Int16Be), 1).expect("whole float"),
            vec![3]
        );
        assert_eq!(decode_bits(&[true]), json!(true));
        assert_eq!(decode_bits(&[true, false]), json!([true, false]));
        assert_eq!(
            encode_bits(&json!([true, 0, 1])).expect("bits"),
            vec![true, false, true]
        );
        assert!(encode_bits(&json!("on")).is_err());
        assert_eq!(registers_for(T::DoubleBe, 1), 4);
        assert_eq!(registers_for(T::StringBe, 10), 10);
    }
}
