"""A pymodbus TCP server on loopback with known registers, for collector/tests/facility_modbus.rs.

Usage: python modbus_server.py PORT

Holding registers (protocol addresses, zero-based):
  0-1   float32 1234.5, word order big (ABCD)          0x449A 0x5000
  2-3   float32 1234.5, word order little (CDAB)       0x5000 0x449A
  4     int16 -123 (scale 0.1 -> -12.3 degC)            0xFF85
  5     uint16 655 (scale 0.1 -> 65.5 %)                0x028F
  6-7   uint32 counter 0xFFFFFFF0, big word order       (the test writes it past the wrap)
  8-11  float64 4512.3, big word order
  12    uint16 counter 65530                            (the test writes it past the wrap)
  13-14 uint32 0x00010002, word order little            0x0002 0x0001
Input registers, an Eastron SDM630 (float32 ABCD):
  52-53   total system power 12345.5 W
  72-73   total import 98765.25 kWh
"""

import asyncio
import struct
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer


def words(fmt, value):
    raw = struct.pack(">" + fmt, value)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def main():
    port = int(sys.argv[1])
    hr = [0] * 64
    hr[0:2] = words("f", 1234.5)
    hr[2:4] = list(reversed(words("f", 1234.5)))
    hr[4] = 0xFF85
    hr[5] = 655
    hr[6:8] = words("I", 0xFFFFFFF0)
    hr[8:12] = words("d", 4512.3)
    hr[12] = 65530
    hr[13:15] = [0x0002, 0x0001]
    ir = [0] * 400
    ir[52:54] = words("f", 12345.5)
    ir[72:74] = words("f", 98765.25)
    # Block address 1 is protocol address 0 (pymodbus' historical one-based data model).
    device = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, hr), ir=ModbusSequentialDataBlock(1, ir))
    context = ModbusServerContext(devices=device, single=True)
    asyncio.run(StartAsyncTcpServer(context=context, address=("127.0.0.1", port)))


if __name__ == "__main__":
    main()
