"""A pymodbus 3.7 TCP server as its own process, so a test can kill it like a PLC losing power.

usage: python pymodbus_server.py PORT TEMPERATURE   (holding registers 0-1 hold TEMPERATURE as floatBE)
"""

import asyncio
import struct
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncTcpServer


def main():
    port, temperature = int(sys.argv[1]), float(sys.argv[2])
    block = lambda: ModbusSequentialDataBlock(0, [0] * 100)
    slave = ModbusSlaveContext(di=block(), co=block(), hr=block(), ir=block())
    slave.setValues(3, 0, list(struct.unpack(">HH", struct.pack(">f", temperature))))
    asyncio.run(StartAsyncTcpServer(context=ModbusServerContext(slaves=slave, single=True), address=("127.0.0.1", port)))


if __name__ == "__main__":
    main()
