"""An S7 CPU for the interoperability tests: python-snap7's server (pure Python, written by
people who are not on this team) with data blocks, flags, inputs and outputs holding one value
of every type the tests read.

    python snap7_server.py PORT [TEMPERATURE]

TEMPERATURE (default 21.5) is the REAL at DB10,REAL4, so a restarted CPU is told apart.

python-snap7 3.3.0's server stores a bit write's data byte over the whole byte (it drops the
bit number); a real CPU changes that bit alone. `BitExactServer` does what the CPU does, so the
tests can check that a bit write leaves the program's other bits alone."""

import struct
import sys
import time

from snap7.datatypes import S7WordLen
from snap7.server import Server
from snap7.type import SrvArea


class BitExactServer(Server):
    def _parse_address_specification(self, addr_spec):
        parsed = super()._parse_address_specification(addr_spec)
        if parsed and len(addr_spec) >= 12:
            parsed["bit"] = int.from_bytes(addr_spec[9:12], "big") % 8
        return parsed

    def _handle_write_area(self, request, client_address):
        spec = request.get("parameters", {}).get("address_spec", {})
        data = request.get("data", {})
        if spec.get("word_len") == S7WordLen.BIT and data.get("data"):
            key = (spec["area"], spec["db_number"])
            area = self.memory_areas.get(key)
            if area is not None and spec["start"] < len(area):
                mask = 1 << spec["bit"]
                old = area[spec["start"]]
                new = old | mask if data["data"][0] & 1 else old & ~mask
                data["data"] = bytes([new])
        return super()._handle_write_area(request, client_address)


def s7_string(text: str, max_len: int) -> bytes:
    raw = text.encode("latin-1")
    return bytes([max_len, len(raw)]) + raw.ljust(max_len, b"\0")


def memory(temperature: float):
    db1 = bytearray(64)
    db1[0] = 0b0000_0010                                      # DB1,X0.1 (and X0.3 written)
    db1[2:4] = struct.pack(">h", -1234)                       # DB1,INT2
    db1[4:6] = struct.pack(">H", 65000)                       # DB1,WORD4
    db1[6:10] = struct.pack(">I", 4_000_000_000)              # DB1,DWORD6
    db1[10:18] = struct.pack(">d", 2.25)                      # DB1,LREAL10
    db1[18:22] = bytes([1, 2, 3, 4])                          # DB1,B18,4
    db1[22:27] = b"PRESS"                                     # DB1,C22.5
    db1[28] = 0b0000_0101                                     # DB1,X28.0.4
    db1[32:36] = struct.pack(">i", -42)                        # DB1.DBD32 as DINT
    db10 = bytearray(64)
    db10[0:4] = struct.pack(">f", 0.0)                        # DB10,REAL0 (setpoint)
    db10[4:8] = struct.pack(">f", temperature)                # DB10,REAL4
    db10[8:24] = struct.pack(">4f", 1.5, 2.5, 3.5, 4.5)        # DB10,REAL8.4
    db3 = bytearray(64)
    db3[20:32] = s7_string("recipe-7", 10)                    # DB3,S20.10
    flags = bytearray(256)
    flags[200] = 0b1000_0000                                  # M200.7 (M200.0 written)
    flags[10:12] = struct.pack(">H", 777)                     # MW10
    inputs = bytearray([0b0000_0001, 0])                      # I0.0
    outputs = bytearray([0, 0b0000_0100])                     # Q1.2
    return {
        (SrvArea.DB, 1): db1,
        (SrvArea.DB, 10): db10,
        (SrvArea.DB, 3): db3,
        (SrvArea.MK, 0): flags,
        (SrvArea.PE, 0): inputs,
        (SrvArea.PA, 0): outputs,
    }


def main():
    port = int(sys.argv[1])
    temperature = float(sys.argv[2]) if len(sys.argv) > 2 else 21.5
    server = BitExactServer(log=False)
    for (area, index), data in memory(temperature).items():
        server.register_area(area, index, data)
    server.start(tcp_port=port)
    print("ready", flush=True)
    try:
        while True:
            time.sleep(1)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
