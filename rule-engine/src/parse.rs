//! The `parse` rule: reads the payload's bytes (or a JSON string's text) in a given format.
//! Binary formats need exactly their size in bytes, so a wrong format is an error rather than a
//! number read from part of the message.

use crate::expression::JValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use commissioning::model::ParseFormat;

use crate::payload::Payload;

pub fn parse(format: ParseFormat, payload: &mut Payload) -> Result<Payload, String> {
    let bytes = input_bytes(payload)?;
    let number = |n: f64| -> Result<Payload, String> {
        if n.is_finite() {
            Ok(Payload::from_value(JValue::Number(n)))
        } else {
            Err(format!("{n} is not a number JSON can carry"))
        }
    };
    match format {
        ParseFormat::Json => {
            let mut parsed = Payload::from_bytes(bytes);
            parsed.value()?;
            Ok(parsed)
        }
        ParseFormat::Utf8 => std::str::from_utf8(&bytes)
            .map(|text| Payload::from_value(JValue::from(text.to_string())))
            .map_err(|e| format!("the payload is not UTF-8: {e}")),
        ParseFormat::Latin1 => Ok(Payload::from_value(JValue::from(
            bytes.iter().map(|&b| char::from(b)).collect::<String>(),
        ))),
        ParseFormat::Ascii => match bytes.iter().position(|b| !b.is_ascii()) {
            Some(at) => Err(format!(
                "byte {at} is 0x{:02x}, which is not ASCII",
                bytes[at]
            )),
            None => Ok(Payload::from_value(JValue::from(
                String::from_utf8_lossy(&bytes).into_owned(),
            ))),
        },
        ParseFormat::Boolean => match bytes.is_empty() {
            true => Err("an empty payload is neither true nor false".into()),
            false => Ok(Payload::from_value(JValue::Bool(
                bytes.iter().any(|&b| b != 0),
            ))),
        },
        ParseFormat::Int8 => number(i8::from_be_bytes(sized(&bytes, "int8")?) as f64),
        ParseFormat::Uint8 => number(u8::from_be_bytes(sized(&bytes, "uint8")?) as f64),
        ParseFormat::Int16Be => number(i16::from_be_bytes(sized(&bytes, "int16BE")?) as f64),
        ParseFormat::Int16Le => number(i16::from_le_bytes(sized(&bytes, "int16LE")?) as f64),
        ParseFormat::Uint16Be => number(u16::from_be_bytes(sized(&bytes, "uint16BE")?) as f64),
        ParseFormat::Uint16Le => number(u16::from_le_bytes(sized(&bytes, "uint16LE")?) as f64),
        ParseFormat::Int32Be => number(i32::from_be_bytes(sized(&bytes, "int32BE")?) as f64),
        ParseFormat::Int32Le => number(i32::from_le_bytes(sized(&bytes, "int32LE")?) as f64),
        ParseFormat::Uint32Be => number(u32::from_be_bytes(sized(&bytes, "uint32BE")?) as f64),
        ParseFormat::Uint32Le => number(u32::from_le_bytes(sized(&bytes, "uint32LE")?) as f64),
        ParseFormat::FloatBe => number(f32::from_be_bytes(sized(&bytes, "floatBE")?) as f64),
        ParseFormat::FloatLe => number(f32::from_le_bytes(sized(&bytes, "floatLE")?) as f64),
        ParseFormat::DoubleBe => number(f64::from_be_bytes(sized(&bytes, "doubleBE")?)),
        ParseFormat::DoubleLe => number(f64::from_le_bytes(sized(&bytes, "doubleLE")?)),
        ParseFormat::ToBase64 => Ok(Payload::from_value(JValue::from(STANDARD.encode(&bytes)))),
        ParseFormat::FromBase64 => {
            let text: Vec<u8> = bytes
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            STANDARD
                .decode(text)
                .map(|decoded| Payload::from_bytes(Bytes::from(decoded)))
                .map_err(|e| format!("the payload is not base64: {e}"))
        }
    }
}

/// The bytes a format reads: the message as it arrived, or the text of a JSON string an earlier
/// rule produced.
fn input_bytes(payload: &mut Payload) -> Result<Bytes, String> {
    if let Some(raw) = payload.raw() {
        return Ok(raw.clone());
    }
    match payload.value()? {
        JValue::String(text) => Ok(Bytes::copy_from_slice(text.as_bytes())),
        _ => Err(
            "`parse` reads bytes or a string; an earlier rule made this payload structured JSON"
                .into(),
        ),
    }
}

fn sized<const N: usize>(bytes: &[u8], format: &str) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| {
        format!(
            "{format} needs exactly {N} byte{}, the payload has {}",
            if N == 1 { "" } else { "s" },
            bytes.len()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(format: ParseFormat, input: &[u8]) -> Result<String, String> {
        let mut payload = Payload::from_bytes(Bytes::copy_from_slice(input));
        let out = parse(format, &mut payload)?;
        out.into_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn every_format_reads_its_bytes() {
        use ParseFormat::*;
        let table: &[(ParseFormat, &[u8], &str)] = &[
            (Json, br#"{"a": [1, 2]}"#, r#"{"a": [1, 2]}"#),
            (Utf8, "Grüße".as_bytes(), "\"Grüße\""),
            (Latin1, &[0x47, 0x72, 0xfc, 0xdf, 0x65], "\"Grüße\""),
            (Ascii, b"OK 42", "\"OK 42\""),
            (Boolean, &[0x00, 0x01], "true"),
            (Boolean, &[0x00], "false"),
            (Int8, &[0xff], "-1"),
            (Uint8, &[0xff], "255"),
            (Int16Be, &[0xff, 0xfe], "-2"),
            (Int16Le, &[0xfe, 0xff], "-2"),
            (Uint16Be, &[0x01, 0x02], "258"),
            (Uint16Le, &[0x02, 0x01], "258"),
            (Int32Be, &[0xff, 0xff, 0xff, 0xfd], "-3"),
            (Int32Le, &[0xfd, 0xff, 0xff, 0xff], "-3"),
            (Uint32Be, &[0x00, 0x01, 0x00, 0x00], "65536"),
            (Uint32Le, &[0x00, 0x00, 0x01, 0x00], "65536"),
            (FloatBe, &1.5f32.to_be_bytes(), "1.5"),
            (FloatLe, &1.5f32.to_le_bytes(), "1.5"),
            (DoubleBe, &(-0.25f64).to_be_bytes(), "-0.25"),
            (DoubleLe, &(-0.25f64).to_le_bytes(), "-0.25"),
            (ToBase64, &[0xde, 0xad, 0xbe, 0xef], "\"3q2+7w==\""),
            (FromBase64, b"aGVs\nbG8=", "hello"),
        ];
        for (format, input, expected) in table {
            assert_eq!(run(*format, input).as_deref(), Ok(*expected), "{format:?}");
        }
    }

    #[test]
    fn wrong_input_is_an_error_not_a_guess() {
        use ParseFormat::*;
        assert!(
            run(Int16Be, &[1, 2, 3, 4])
                .unwrap_err()
                .contains("exactly 2 bytes, the payload has 4")
        );
        assert!(run(Json, b"{oops").unwrap_err().contains("not JSON"));
        assert!(run(Utf8, &[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        assert!(
            run(Ascii, &[0x41, 0xe9])
                .unwrap_err()
                .contains("byte 1 is 0xe9")
        );
        assert!(run(Boolean, &[]).is_err());
        assert!(run(FloatBe, &f32::NAN.to_be_bytes()).is_err());
        assert!(run(FromBase64, b"***").unwrap_err().contains("base64"));
    }

    #[test]
    fn a_string_from_an_earlier_rule_is_read_as_text() {
        let mut payload = Payload::from_value(JValue::from("{\"n\": 5}".to_string()));
        let mut parsed = parse(ParseFormat::Json, &mut payload).unwrap();
        assert_eq!(
            parsed.value().unwrap().to_json_string().unwrap(),
            "{\"n\":5}"
        );
        let mut object = Payload::from_value(serde_json::from_str::<JValue>("{\"n\": 5}").unwrap());
        assert!(parse(ParseFormat::Int8, &mut object).is_err());
    }
}
