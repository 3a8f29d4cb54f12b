"""Generate the renderer's art into ``assets/``: a mowed-grass tile and a football sprite.

Everything is drawn procedurally with numpy from a fixed seed, so the PNGs are reproducible and
carry no third-party licence. Run from anywhere:

    python scripts/make_assets.py

Writes:
    assets/grass.png   128x128 RGB, tileable in both directions. The left half is the light
                       mowing stripe and the right half the dark one, so tiling it along x gives
                       alternating stripes; the renderer crops one half per stripe.
    assets/ball.png    64x64 RGBA, a classic black-and-white football (truncated icosahedron:
                       black pentagons, white hexagons) with shading and a soft outline.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import imageio.v3 as iio
import numpy as np

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SEED = 20240607

GRASS_SIZE = 128
LIGHT_STRIPE = np.array([88, 162, 70], dtype=np.float64)
DARK_STRIPE = np.array([72, 142, 58], dtype=np.float64)

BALL_SIZE = 64
BALL_SUPERSAMPLE = 4


# ---------------------------------------------------------------------------------------- grass
def periodic_noise(rng: np.random.Generator, size: int, max_freq: int, decay: float) -> np.ndarray:
    """Smooth noise that tiles seamlessly: a sum of sines with integer frequencies. [size, size]"""
    coords = np.arange(size) / size * 2 * np.pi
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    noise = np.zeros((size, size))
    for fy in range(-max_freq, max_freq + 1):
        for fx in range(0, max_freq + 1):
            if fx == 0 and fy <= 0:
                continue
            amplitude = rng.normal() / (1.0 + np.hypot(fx, fy)) ** decay
            noise += amplitude * np.cos(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    return noise / (np.abs(noise).max() + 1e-9)


def wrap_blur(image: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Box blur along one axis with wrap-around, so the result still tiles."""
    return sum(np.roll(image, shift, axis=axis) for shift in range(-radius, radius + 1)) / (2 * radius + 1)


def make_grass(rng: np.random.Generator) -> np.ndarray:
    """Two mowing stripes with blade grain and mottling. uint8 [128, 128, 3], tileable."""
    size = GRASS_SIZE
    base = np.empty((size, size, 3))
    base[:, : size // 2] = LIGHT_STRIPE
    base[:, size // 2 :] = DARK_STRIPE
    # Blades: fine noise stretched along the mowing direction (image y, i.e. across the pitch).
    blades = wrap_blur(rng.normal(size=(size, size)), radius=2, axis=0)
    blades /= np.abs(blades).max()
    mottling = periodic_noise(rng, size, max_freq=4, decay=1.2)
    shade = 1.0 + 0.06 * blades + 0.05 * mottling
    # A hint of yellow where the mottling is high, as on a real pitch.
    tint = np.stack([0.03 * mottling, 0.01 * mottling, -0.02 * mottling], axis=-1)
    grass = base * shade[..., None] * (1.0 + tint)
    # Few distinct values keep the PNG small without visible banding.
    return np.clip(np.round(grass / 2) * 2, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- ball
def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Unit directions of the 12 vertices and 20 face centres of a regular icosahedron."""
    phi = (1 + 5**0.5) / 2
    verts = []
    for a, b in itertools.product((-1, 1), repeat=2):
        verts += [(0, a, b * phi), (a, b * phi, 0), (b * phi, 0, a)]
    verts = np.array(verts, dtype=np.float64)
    edge = 2.0
    faces = []
    for i, j, k in itertools.combinations(range(len(verts)), 3):
        tri = verts[[i, j, k]]
        if np.allclose(np.linalg.norm(tri - np.roll(tri, 1, axis=0), axis=1), edge):
            faces.append(verts[[i, j, k]].mean(axis=0))
    faces = np.array(faces)
    verts = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    assert len(verts) == 12 and len(faces) == 20
    return verts, faces / np.linalg.norm(faces, axis=1, keepdims=True)


def rotation_to_z(direction: np.ndarray) -> np.ndarray:
    """Rotation matrix taking unit `direction` onto +z (Rodrigues' formula)."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(direction, z)
    sin, cos = np.linalg.norm(axis), float(direction @ z)
    if sin < 1e-9:
        return np.eye(3)
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * kx @ kx


def rotation_xy(angle: float, axis: int) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_ball() -> np.ndarray:
    """Football sprite with alpha. uint8 [64, 64, 4]"""
    pentagons, hexagons = icosahedron()
    # Truncated icosahedron with unit edge: pentagon faces sit at 2.3274 from the centre,
    # hexagon faces at 2.2673. A point on the sphere belongs to the face whose plane its ray
    # meets first, i.e. the largest dot(p, n) / distance.
    normals = np.concatenate([pentagons, hexagons])
    plane_dist = np.concatenate([np.full(12, 2.3274), np.full(20, 2.2673)])
    # One pentagon faces the viewer, then tilt so the ball does not look like a diagram.
    rot = rotation_xy(0.35, 0) @ rotation_xy(-0.45, 1) @ rotation_to_z(pentagons[0])
    normals = normals @ rot.T

    size = BALL_SIZE * BALL_SUPERSAMPLE
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(-coords, coords, indexing="ij")  # 3D y points up the image
    outer = 0.94  # leave room for the anti-aliased outline
    rr = np.hypot(xx, yy) / outer
    inside = rr <= 1.0
    x, y = xx / outer, yy / outer
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))
    points = np.stack([x, y, z], axis=-1)

    score = points @ normals.T / plane_dist  # [S, S, 32]
    order = np.sort(score, axis=-1)
    best = np.argmax(score, axis=-1)
    gap = (order[..., -1] - order[..., -2]) / order[..., -1]
    is_pentagon = best < 12
    seam = gap < 0.012

    color = np.where(is_pentagon[..., None], np.array([28, 28, 34.0]), np.array([246, 246, 242.0]))
    color = np.where(seam[..., None] & ~is_pentagon[..., None], np.array([150, 150, 155.0]), color)

    light = np.array([-0.45, 0.55, 0.70])
    light /= np.linalg.norm(light)
    diffuse = 0.45 + 0.55 * np.clip(points @ light, 0, 1)
    half = light + np.array([0, 0, 1.0])
    half /= np.linalg.norm(half)
    specular = np.clip(points @ half, 0, 1) ** 30 * 0.55
    rim = 0.8 + 0.2 * z  # darken towards the silhouette
    shaded = color * (diffuse * rim)[..., None] + 255 * specular[..., None]

    # Soft dark outline so the ball stands out on both grass stripes.
    outline = (rr > 0.93) & inside
    shaded = np.where(outline[..., None], np.array([45, 45, 50.0]), shaded)
    alpha = np.where(np.hypot(xx, yy) <= outer * 1.0, 255.0, 0.0)

    rgba = np.concatenate([np.clip(shaded, 0, 255), alpha[..., None]], axis=-1)
    rgba[~inside] = 0.0
    # Supersampled -> final size: average colour weighted by alpha, average alpha.
    s = BALL_SUPERSAMPLE
    blocks = rgba.reshape(BALL_SIZE, s, BALL_SIZE, s, 4)
    a = blocks[..., 3:4]
    alpha_mean = a.mean(axis=(1, 3))
    rgb = (blocks[..., :3] * a).sum(axis=(1, 3)) / np.maximum(a.sum(axis=(1, 3)), 1e-9)
    out = np.concatenate([rgb, alpha_mean], axis=-1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def main() -> None:
    ASSETS_DIR.mkdir(exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, image in (("grass.png", make_grass(rng)), ("ball.png", make_ball())):
        path = ASSETS_DIR / name
        iio.imwrite(path, image, plugin="pillow", optimize=True)
        print(f"wrote {path} {image.shape} {path.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
