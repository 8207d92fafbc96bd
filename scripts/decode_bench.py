"""Decoding compressed camera images, candidates side by side: `python scripts/decode_bench.py [--repeats 30]`.

Encodes one synthetic frame (fasthmr_model.data.clips, two people) at 640x480 and 1280x720 as an RGB JPEG
(quality 95) and PNG (level 3), and its instance mask as 8- and 16-bit PNG, then decodes each with every
installed candidate (Pillow, opencv-python-headless, simplejpeg, imageio) into what the node needs ((H, W, 3)
uint8 RGB, (H, W) ids), and prints the median milliseconds per frame over interleaved rounds. A candidate
that is not installed, or cannot read a format, is marked "-". The decoded arrays are checked equal across
candidates (PNG) or within a grey level on average (JPEG decoders may round differently).
"""

from __future__ import annotations

import argparse
import io
import time
from statistics import median

import numpy as np


def candidates() -> dict:
    """name -> {format: decode(bytes) -> array} for the installed libraries."""
    found = {}
    try:
        from PIL import Image

        def pillow(data):
            with Image.open(io.BytesIO(data)) as picture:
                if picture.mode not in ("RGB", "L", "I;16"):
                    picture = picture.convert("RGB")
                return np.asarray(picture)

        found["Pillow"] = {"jpeg": pillow, "png": pillow, "png8": pillow, "png16": pillow}
    except ImportError:
        pass
    try:
        import cv2

        def opencv_rgb(data):
            return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

        def opencv_ids(data):
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)

        found["opencv"] = {"jpeg": opencv_rgb, "png": opencv_rgb, "png8": opencv_ids, "png16": opencv_ids}
    except ImportError:
        pass
    try:
        import simplejpeg

        found["simplejpeg"] = {"jpeg": lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")}
    except ImportError:
        pass
    try:
        import imageio.v3 as iio

        found["imageio"] = {name: iio.imread for name in ("jpeg", "png", "png8", "png16")}
    except ImportError:
        pass
    return found


def encoded_frames(width: int, height: int) -> dict:
    from PIL import Image

    from fasthmr_model.body.lbs import BodyModel
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.data.clips import render_clip

    body_model = BodyModel.from_file(load_bundle(None).body_model_path)
    frame = render_clip(7, 2, 1, body_model, width, height)[0]
    encoded = {}
    for name, array, options in (("jpeg", frame.image, {"format": "JPEG", "quality": 95}),
                                 ("png", frame.image, {"format": "PNG", "compress_level": 3}),
                                 ("png8", frame.instance_mask, {"format": "PNG", "compress_level": 3}),
                                 ("png16", frame.instance_mask.astype(np.uint16) * 1000,
                                  {"format": "PNG", "compress_level": 3})):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, **options)
        encoded[name] = (buffer.getvalue(), array)
    return encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    decoders = candidates()
    names = list(decoders)
    print("median ms per frame (" + ", ".join(names) + " installed; - = not installed or no such format)")
    print("| frame | bytes | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for width, height in ((640, 480), (1280, 720)):
        for kind, (data, original) in encoded_frames(width, height).items():
            times = {name: [] for name in names if kind in decoders[name]}
            for name in times:  # check, and warm up
                decoded = decoders[name][kind](data)
                difference = np.abs(decoded.astype(np.int32) - original).mean()
                assert difference < (2.0 if kind == "jpeg" else 1e-9), (name, kind, difference)
            for _ in range(args.repeats):
                for name in times:
                    start = time.perf_counter()
                    decoders[name][kind](data)
                    times[name].append((time.perf_counter() - start) * 1000.0)
            cells = [f"{median(times[name]):.2f}" if name in times else "-" for name in names]
            label = {"jpeg": "RGB JPEG q95", "png": "RGB PNG", "png8": "mask PNG 8-bit", "png16": "mask PNG 16-bit"}[kind]
            print(f"| {width}x{height} {label} | {len(data)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
