"""The reference libraries called one by one, one call per catalogue group, single-threaded: the
baseline bench/features.py measures Darkroom's engine against. Needs the ``bench`` extra."""

from __future__ import annotations

import hashlib
import io
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import cv2  # noqa: E402
import imagehash  # noqa: E402
import numpy as np  # noqa: E402
import scipy.cluster.vq  # noqa: E402
import scipy.stats  # noqa: E402
import skimage.feature  # noqa: E402
import skimage.filters  # noqa: E402
import skimage.measure  # noqa: E402
from PIL import Image, ImageFilter, ImageStat  # noqa: E402

cv2.setNumThreads(1)


def reference_catalogue(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    image.load()
    rgb_image, gray_image = image.convert("RGB"), image.convert("L")
    rgb, gray = np.array(rgb_image), np.array(gray_image)
    channels = [rgb[..., i] for i in range(3)] + [gray]
    for channel in channels:  # stats
        values = channel.reshape(-1).astype(np.float64)
        values.mean(), values.std(), values.min(), values.max(), np.median(values)
        scipy.stats.skew(values), scipy.stats.kurtosis(values)
    rgb_image.histogram(), gray_image.histogram()  # hist256
    hsv = np.asarray(rgb_image.convert("HSV"))  # hsv
    for i, bins in enumerate((16, 8, 8)):
        cv2.calcHist([hsv], [i], None, [bins], [0, 256])
    cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 256, 0, 256, 0, 256])
    skimage.measure.shannon_entropy(gray, base=2), image.entropy()  # entropy
    cv2.Laplacian(gray, cv2.CV_64F).var()  # sharpness
    (skimage.filters.sobel(gray) > 0.1).mean(), skimage.feature.canny(gray, sigma=1).mean()  # edges
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))  # colorfulness, both variants
    for rg, yb in ((r - g, 0.5 * (r + g) - b), (np.abs(r - g), np.abs(0.5 * (r + g) - b))):
        np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    for function in (imagehash.average_hash, imagehash.dhash, imagehash.phash, imagehash.whash):  # hashes
        str(function(image, hash_size=8))
    skimage.feature.local_binary_pattern(gray, 8, 1, method="uniform")  # lbp
    matrix = skimage.feature.graycomatrix(
        gray, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=256, symmetric=True, normed=True
    )  # glcm
    for prop in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM"):
        skimage.feature.graycoprops(matrix, prop)
    skimage.feature.hog(
        np.array(gray_image.resize((128, 128), Image.Resampling.BILINEAR)),
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
    )  # hog
    small = rgb_image.resize((64, 64), Image.Resampling.BILINEAR)  # dominant colours
    quantized = small.quantize(colors=5, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette()
    used = np.flatnonzero(np.bincount(np.asarray(quantized).ravel(), minlength=256))
    init = np.array([palette[3 * i : 3 * i + 3] for i in used], dtype=np.float64)
    pixels = np.asarray(small).reshape(-1, 3).astype(np.float64)
    centers, _ = scipy.cluster.vq.kmeans2(pixels, init, iter=10, minit="matrix", missing="warn")
    scipy.cluster.vq.vq(pixels, centers)
    array = np.asarray(image)  # CleanVision's checks
    red, green, blue = (array[..., i].astype("int") for i in range(3))
    brightness = np.sqrt(0.241 * (red * red) + 0.691 * (green * green) + 0.068 * (blue * blue)) / 255
    np.percentile(brightness, [1, 5, 10, 15, 90, 95, 99])
    means = ImageStat.Stat(image).mean
    np.sqrt(0.241 * means[0] ** 2 + 0.691 * means[1] ** 2 + 0.068 * means[2] ** 2) / 255
    ratio = max(image.size) / 64
    small_gray = image.resize((int(image.width // ratio), int(image.height // ratio))).convert("L")
    np.sqrt(ImageStat.Stat(small_gray.filter(ImageFilter.FIND_EDGES)).var[0]), np.std(small_gray.histogram())
    hashlib.md5(array.tobytes()).hexdigest()
