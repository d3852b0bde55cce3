"""A pymodbus 3.7 server speaking RTU frames, as its own process: on a serial line (one end of
a socat pseudo-terminal pair) or over TCP, the way serial-to-Ethernet gateways pass frames on.
Two devices share the line: unit 1 and unit 2.

usage: python pymodbus_rtu_server.py serial DEVICE BAUD
       python pymodbus_rtu_server.py tcp PORT

  unit 1: holding registers 0-1  21.5 as floatBE (a temperature)
  unit 2: holding register  0    1013 (a pressure); holding register 10 writable
"""

import asyncio
import struct
import sys

from pymodbus import FramerType
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer


def device():
    block = lambda: ModbusSequentialDataBlock(0, [0] * 100)
    return ModbusSlaveContext(di=block(), co=block(), hr=block(), ir=block())


def main():
    unit1, unit2 = device(), device()
    unit1.setValues(3, 0, list(struct.unpack(">HH", struct.pack(">f", 21.5))))
    unit2.setValues(3, 0, [1013])
    context = ModbusServerContext(slaves={1: unit1, 2: unit2}, single=False)
    if sys.argv[1] == "serial":
        server = StartAsyncSerialServer(context=context, port=sys.argv[2], baudrate=int(sys.argv[3]),
                                        framer=FramerType.RTU)
    else:
        server = StartAsyncTcpServer(context=context, address=("127.0.0.1", int(sys.argv[2])),
                                     framer=FramerType.RTU)
    asyncio.run(server)


if __name__ == "__main__":
    main()
