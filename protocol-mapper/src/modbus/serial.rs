//! Modbus RTU on a serial line: opening the device with its line settings, and the silent
//! interval the standard requires between frames.

use std::time::Duration;

use commissioning::model::{ModbusConnection, ModbusParity};
use tokio_serial::{DataBits, Parity, SerialPortBuilderExt, SerialStream, StopBits};

/// Opens `device` with the connection's baud rate, data bits, parity and stop bits.
pub fn open(spec: &ModbusConnection) -> Result<SerialStream, String> {
    let device = spec.device.as_deref().unwrap_or_default();
    let data_bits = match spec.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let parity = match spec.parity {
        ModbusParity::None => Parity::None,
        ModbusParity::Even => Parity::Even,
        ModbusParity::Odd => Parity::Odd,
    };
    let stop_bits = match spec.stop_bits {
        2 => StopBits::Two,
        _ => StopBits::One,
    };
    tokio_serial::new(device, spec.baud_rate)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| format!("cannot open serial device {device}: {e}"))
}

/// The silence between two frames on the line: 3.5 character times, and a fixed 1.75 ms
/// above 19200 baud (Modbus over Serial Line, section 2.5.1.1). A character is a start bit,
/// the data bits, the parity bit if any and the stop bits.
pub fn frame_gap(spec: &ModbusConnection) -> Duration {
    if spec.baud_rate > 19_200 {
        return Duration::from_micros(1750);
    }
    let parity = u32::from(spec.parity != ModbusParity::None);
    let bits = 1 + u32::from(spec.data_bits) + parity + u32::from(spec.stop_bits);
    // 3.5 characters of `bits` each at `baud_rate` bits per second, in microseconds.
    let micros = u64::from(bits) * 3_500_000 / u64::from(spec.baud_rate.max(1));
    Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(baud_rate: u32, parity: ModbusParity, stop_bits: u8) -> ModbusConnection {
        let mut spec: ModbusConnection =
            serde_json::from_value(serde_json::json!({"transport": "rtu", "device": "/dev/null"}))
                .unwrap_or_else(|e| panic!("{e}"));
        spec.baud_rate = baud_rate;
        spec.parity = parity;
        spec.stop_bits = stop_bits;
        spec
    }

    #[test]
    fn three_and_a_half_characters_up_to_19200_baud_then_fixed() {
        // 9600 8N1: 10 bits a character, 3.5 characters = 35 bits = 3.646 ms.
        assert_eq!(
            frame_gap(&line(9600, ModbusParity::None, 1)),
            Duration::from_micros(3645)
        );
        // 9600 8E1: 11 bits, 38.5 bits = 4.010 ms.
        assert_eq!(
            frame_gap(&line(9600, ModbusParity::Even, 1)),
            Duration::from_micros(4010)
        );
        assert_eq!(
            frame_gap(&line(115_200, ModbusParity::None, 1)),
            Duration::from_micros(1750)
        );
    }
}
