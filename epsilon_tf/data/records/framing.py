"""TFRecord framing: the bytes around each record and their CRC-32C.

A TFRecord file is a sequence of records, each framed as `uint64 length,
uint32 masked crc32c(length), data, uint32 masked crc32c(data)` (little
endian). Plain Python, no TensorFlow: the command lines check files with
it before TensorFlow loads.
"""

# The length and its CRC before a record's data.
HEADER_BYTES = 12
# Header plus the 4-byte CRC of the data after it.
RECORD_OVERHEAD = 16


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def masked_crc32c(data):
    """The masked CRC-32C that TFRecord framing stores."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def is_tfrecord_header(head):
    """True when `head` starts like an uncompressed TFRecord file."""
    if len(head) < HEADER_BYTES:
        return False
    return masked_crc32c(head[:8]) == int.from_bytes(head[8:12], "little")
