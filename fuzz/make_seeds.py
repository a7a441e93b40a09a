"""Writes the seed corpora (small valid files of each kind) into corpus/<target>/."""
import json, struct, zlib
from pathlib import Path

def png(w, h, color_type, bit_depth, pixel):
    raw = b"".join(b"\0" + b"".join(pixel(x, y) for x in range(w)) for y in range(h))
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

def tiff(w, h, samples, bits, data):
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, bits), (259, 3, 1, 1),
               (262, 3, 1, 2 if samples == 3 else 1), (273, 4, 1, 0), (277, 3, 1, samples),
               (278, 4, 1, h), (279, 4, 1, len(data))]
    ifd_size = 2 + 12 * len(entries) + 4
    offset = 8 + ifd_size
    entries[5] = (273, 4, 1, offset)
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack("<HHII", tag, kind, count, value)
    return out + struct.pack("<I", 0) + data

he = lambda x, y: bytes([200 - 10 * x, 120 + 5 * y, 180])
seeds = {
    "image_decode": {
        "rgb8.png": png(4, 3, 2, 8, he),
        "rgba8.png": png(3, 3, 6, 8, lambda x, y: he(x, y) + bytes([255 * (x % 2)])),
        "rgb16.png": png(2, 2, 2, 16, lambda x, y: struct.pack(">HHH", 4095, 2048 * x, 100 * y)),
        "grey8.png": png(3, 2, 0, 8, lambda x, y: bytes([40 * x])),
        "rgb8.tif": tiff(3, 2, 3, 8, b"".join(he(x, y) for y in range(2) for x in range(3))),
    },
    "label_map": {
        "grey16.png": b"\0" + png(4, 4, 0, 16, lambda x, y: struct.pack(">H", (x // 2) + 2 * (y // 2))),
        "grey8.png": b"\0" + png(4, 4, 0, 8, lambda x, y: bytes([255 if x > 1 else 0])),
        "grey32.tif": b"\1" + tiff(3, 3, 1, 32, b"".join(struct.pack("<I", 70000 + x) for y in range(3) for x in range(3))),
    },
    "monuseg_xml": {
        "square.xml": b'<Annotations MicronsPerPixel="0.25"><Annotation><Regions><Region><Vertices>'
                      b'<Vertex X="1" Y="1"/><Vertex X="9" Y="1"/><Vertex X="9" Y="9"/><Vertex X="1" Y="9"/>'
                      b'</Vertices></Region><Region><Vertices><Vertex X="20.5" Y="3"/><Vertex X="30" Y="12"/>'
                      b'<Vertex X="22" Y="18"/></Vertices></Region></Regions></Annotation></Annotations>',
    },
}
# A bundle: a small configuration and the header of a safetensors file with one f16 tensor.
config = {"num_classes": 2, "backbone": {"depth": 18, "width": 8, "norm": {"GroupNorm": {"groups": 4}}, "in_channels": 3},
          "fpn_channels": 16, "mask_head_layers": [8], "mask_dim_reduced": 8, "box_representation_size": 32}
header = json.dumps({"x": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}).encode()
safetensors = struct.pack("<Q", len(header)) + header + b"\0\x3c\0\x3c"
seeds["model_bundle"] = {"small.bin": json.dumps(config).encode() + b"\0" + safetensors}
seeds["export"] = {"blobs.bin": bytes([20, 20, 5, 250] + [0, 0, 1, 1, 2, 0, 3, 3] * 8)}
for target, files in seeds.items():
    for name, data in files.items():
        path = Path(__file__).parent / "corpus" / target / name
        path.write_bytes(data)
        print(path, len(data))
