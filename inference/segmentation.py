"""Classical lesion segmentation of a dermoscopy photo: mask, outline and area.

The lesion is what is darker than the skin in the blue channel (where pigmented lesions contrast
most with skin): a 3×3 mean filter, Otsu's threshold (darker than it: lesion), a 3×3 opening
then closing, holes filled, and the 4-connected component nearest the image centre kept. A mask
covering under 2 % or over 85 % of the frame is a failed segmentation (the lesion fills the
frame, or is not darker than the skin): None.

:func:`lesion_mask` works on any (H, W, 3) uint8 array; the Grad-CAM localisation check
(:mod:`inference.training.heatmap_check`) runs it on the 64 px images the model sees.
:func:`segment_photo` runs it at analysis time on the centre square of the photo that the model
saw (at ``SEGMENT_SIDE`` px) and returns the outline as a polygon in the photo's own coordinates
(fractions of its width and height) and the area in the photo's pixels — or in mm² when the
pixel spacing is known (a DICOM photograph's Pixel Spacing).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

MIN_AREA, MAX_AREA = 0.02, 0.85
SEGMENT_SIDE = 128  # the centre square is segmented at this side (px)


def otsu(values: np.ndarray) -> float:
    histogram = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256)
    total = histogram.sum()
    cumulative = np.cumsum(histogram)
    weighted = np.cumsum(histogram * np.arange(256))
    best, threshold = -1.0, 0
    for t in range(255):
        w0 = cumulative[t]
        w1 = total - w0
        if w0 == 0 or w1 == 0:
            continue
        m0 = weighted[t] / w0
        m1 = (weighted[-1] - weighted[t]) / w1
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, threshold = between, t
    return float(threshold)


def _shift_stack(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    return np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def erode(mask: np.ndarray) -> np.ndarray:
    return np.asarray(_shift_stack(mask).all(axis=0))


def dilate(mask: np.ndarray) -> np.ndarray:
    return np.asarray(_shift_stack(mask).any(axis=0))


def components(mask: np.ndarray) -> list[np.ndarray]:
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        part = np.zeros_like(mask, dtype=bool)
        queue = deque([(y0, x0)])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            part[y, x] = True
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        found.append(part)
    return found


def fill_holes(mask: np.ndarray) -> np.ndarray:
    outside = np.zeros_like(mask, dtype=bool)
    border = ~mask
    edge = np.zeros_like(mask, dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    for part in components(border):
        if (part & edge).any():
            outside |= part
    return ~outside


def lesion_mask(rgb: np.ndarray) -> np.ndarray | None:
    """The lesion in an (H, W, 3) uint8 dermoscopy image, or None when segmentation fails."""
    blue = rgb[..., 2].astype(np.float64)
    padded = np.pad(blue, 1, mode="edge")
    h, w = blue.shape
    smooth = np.zeros_like(blue)
    for dy in range(3):
        for dx in range(3):
            smooth += padded[dy : dy + h, dx : dx + w] / 9.0
    mask = np.asarray(smooth <= otsu(smooth))
    mask = dilate(erode(mask))  # opening
    mask = erode(dilate(mask))  # closing
    mask = fill_holes(mask)
    parts = components(mask)
    if not parts:
        return None
    grid = np.indices(mask.shape)
    yy, xx = grid[0], grid[1]
    centre = ((h - 1) / 2, (w - 1) / 2)

    def distance(part: np.ndarray) -> float:
        return float(np.min(np.hypot(yy[part] - centre[0], xx[part] - centre[1])))

    chosen = min(parts, key=lambda p: (distance(p), -int(p.sum())))
    area = chosen.mean()
    return chosen if MIN_AREA <= area <= MAX_AREA else None


# Moore neighbourhood, clockwise on screen (y down), starting west.
_RING = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))


def trace_outline(mask: np.ndarray) -> list[tuple[int, int]]:
    """The outer boundary pixels ``(y, x)`` of the component holding the mask's top-left-most
    pixel, in order (Moore-neighbour tracing; stops when a state repeats)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    first = int(np.lexsort((xs, ys))[0])
    start = (int(ys[first]), int(xs[first]))
    padded = np.pad(mask.astype(bool), 1)

    def inside(p: tuple[int, int]) -> bool:
        return bool(padded[p[0] + 1, p[1] + 1])

    outline = [start]
    current, back = start, 0  # the start's west neighbour is outside (it is left-most in its row)
    seen_states = {(current, back)}
    for _ in range(8 * mask.size):
        for k in range(1, 9):
            d = (back + k) % 8
            candidate = (current[0] + _RING[d][0], current[1] + _RING[d][1])
            if inside(candidate):
                before = (back + k - 1) % 8
                came_from = (current[0] + _RING[before][0], current[1] + _RING[before][1])
                back = _RING.index((came_from[0] - candidate[0], came_from[1] - candidate[1]))
                current = candidate
                break
        else:
            return outline  # a single pixel
        if (current, back) in seen_states:
            break
        seen_states.add((current, back))
        if current == start:
            continue
        outline.append(current)
    return outline


def simplify(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """Ramer–Douglas–Peucker on an open polyline (the ends are kept)."""
    if len(points) < 3:
        return list(points)
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        (ya, xa), (yb, xb) = points[a], points[b]
        length = math.hypot(yb - ya, xb - xa)
        far, index = -1.0, -1
        for i in range(a + 1, b):
            y, x = points[i]
            if length == 0:
                d = math.hypot(y - ya, x - xa)
            else:
                d = abs((xb - xa) * (ya - y) - (xa - x) * (yb - ya)) / length
            if d > far:
                far, index = d, i
        if far > tolerance:
            keep[index] = True
            stack += [(a, index), (index, b)]
    return [p for p, k in zip(points, keep, strict=True) if k]


@dataclass(frozen=True)
class Segmentation:
    """A lesion found on a photo: its outline and area."""

    outline: list[tuple[float, float]]  # (x, y) as fractions of the photo's width and height
    area_pixels: float  # in the photo's own pixels
    area_mm2: float | None  # when the pixel spacing is known
    frame_share: float  # of the centre square segmented
    width: int
    height: int

    def svg_points(self) -> str:
        """The outline as an SVG ``points`` list: ``x,y x,y …`` (fractions, 4 decimals)."""
        return " ".join(f"{x:.4f},{y:.4f}" for x, y in self.outline)


def segment_photo(
    image: Image.Image,
    *,
    pixel_spacing_mm: tuple[float, float] | None = None,
    side: int = SEGMENT_SIDE,
) -> Segmentation | None:
    """Segment the lesion in the centre square of ``image`` (the part the model saw), or None
    when segmentation fails. ``pixel_spacing_mm``: (row, column) spacing of the photo's pixels."""
    width, height = image.size
    square = min(width, height)
    if square < 8:
        return None
    left, top = (width - square) // 2, (height - square) // 2
    crop = image.convert("RGB").crop((left, top, left + square, top + square))
    n = min(side, square)
    rgb = np.asarray(crop.resize((n, n), Image.Resampling.BILINEAR, reducing_gap=2.0))
    mask = lesion_mask(rgb)
    if mask is None:
        return None
    scale = square / n  # photo pixels per segmented pixel
    area_pixels = float(mask.sum()) * scale * scale
    traced = [(float(y), float(x)) for y, x in trace_outline(mask)]
    ring = simplify([*traced, traced[0]], tolerance=0.75)[:-1] if len(traced) > 2 else traced
    outline = [
        (round((left + (x + 0.5) * scale) / width, 4), round((top + (y + 0.5) * scale) / height, 4))
        for y, x in ring
    ]
    area_mm2 = None
    if pixel_spacing_mm is not None:
        area_mm2 = area_pixels * float(pixel_spacing_mm[0]) * float(pixel_spacing_mm[1])
    return Segmentation(outline, area_pixels, area_mm2, float(mask.mean()), width, height)
