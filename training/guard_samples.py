"""Pictures for measuring the chest-radiograph guard: images that are not chest
X-rays (synthetic, and scikit-image's and scikit-learn's bundled samples) and
real chest X-rays altered as another X-ray unit might take them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_non_cxrs(seed: int = 0, size: int = 512) -> list[tuple[str, np.ndarray]]:
    """Grey images that are not chest X-rays: noise, gradients, text, blank, photo-like."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images: list[tuple[str, np.ndarray]] = [
        ("uniform noise", rng.integers(0, 256, (size, size), dtype=np.uint8)),
        ("gaussian noise", np.clip(rng.normal(128, 40, (size, size)), 0, 255).astype(np.uint8)),
        ("horizontal gradient", (x * 255).astype(np.uint8)),
        ("vertical gradient", (y * 255).astype(np.uint8)),
        ("diagonal gradient", ((x + y) * 127).astype(np.uint8)),
        ("radial gradient", np.clip(255 - np.hypot(x - 0.5, y - 0.5) * 360, 0, 255).astype(np.uint8)),
        ("blank black", np.zeros((size, size), np.uint8)),
        ("blank grey", np.full((size, size), 128, np.uint8)),
        ("sine pattern", ((np.sin(x * 60) + np.cos(y * 45) + 2) * 60).astype(np.uint8)),
        ("stripes", ((np.floor(x * 16) % 2) * 255).astype(np.uint8)),
        ("checkerboard", (((np.floor(x * 8) + np.floor(y * 8)) % 2) * 255).astype(np.uint8)),
    ]
    letters = list("abcdefghijklmnopqrstuvwxyz      ")
    for index in range(3):
        page = Image.new("L", (size, size), 255 if index < 2 else 0)
        draw = ImageDraw.Draw(page)
        for row in range(4 + index * 6, size, 12 + 2 * index):
            draw.text((8, row), "".join(rng.choice(letters, 90)), fill=0 if index < 2 else 255)
        images.append((f"text page {index + 1}", np.asarray(page)))
    for index in range(3):
        blobs = rng.normal(size=(8 * (index + 1), 8 * (index + 1)))
        cloud = Image.fromarray(((blobs - blobs.min()) / np.ptp(blobs) * 255).astype(np.uint8))
        images.append((f"smooth clouds {index + 1}", np.asarray(cloud.resize((size, size),
                                                                             Image.Resampling.BICUBIC))))
    for index in range(4):
        scene = 200 - y * 120 + rng.normal(0, 6, (size, size))
        horizon = 0.55 + 0.05 * np.sin(x * 12 + index)
        ground = y > horizon
        scene[ground] = 70 + 40 * index / 3 + rng.normal(0, 15, int(ground.sum()))
        photo = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(photo)
        for _ in range(5 + index):
            cx, cy = (int(v) for v in rng.integers(40, size - 40, 2))
            radius = int(rng.integers(10, 70))
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius),
                         fill=int(rng.integers(0, 255)))
        blurred = photo.filter(ImageFilter.GaussianBlur(1.5))
        images.append((f"photo-like scene {index + 1}", np.asarray(blurred)))
    return images


def library_samples() -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, array) of scikit-image's and scikit-learn's bundled sample images
    (grey or RGB uint8), and notes on what is missing."""
    import warnings

    samples: list[tuple[str, np.ndarray]] = []
    notes: list[str] = []
    try:
        import skimage.data
    except ImportError:
        notes.append("scikit-image not installed: its sample images are left out")
    else:
        for name in ("astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard",
                     "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
                     "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page",
                     "retina", "rocket", "shepp_logan_phantom", "text"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    array = np.asarray(getattr(skimage.data, name)())
            except Exception as exc:  # some need a download: not available offline
                notes.append(f"skimage.data.{name}: {type(exc).__name__}")
                continue
            if array.dtype == bool:
                array = array.astype(np.uint8) * 255
            elif array.dtype.kind == "f":
                array = (np.clip(array / max(float(array.max()), 1e-9), 0, 1) * 255).astype(np.uint8)
            samples.append((f"skimage {name}", array[..., :3] if array.ndim == 3 else array))
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        notes.append("scikit-learn not installed: its sample images are left out")
    else:
        bunch = load_sample_images()
        for filename, array in zip(bunch.filenames, bunch.images, strict=True):
            samples.append((f"sklearn {Path(filename).name}", np.asarray(array)))
    return samples, notes


def altered(images: Sequence[tuple[str, np.ndarray]], seed: int = 0) -> Iterable[tuple[str, np.ndarray]]:
    """Real chest X-rays as another unit might take them: rotated up to 8 degrees,
    cropped to 85-95 %, brighter or darker (gamma 0.7 or 1.5), JPEG quality 60."""
    import io

    rng = np.random.default_rng(seed)
    for name, pixels in images:
        image = Image.fromarray(pixels)
        yield f"{name} rotated", np.asarray(image.rotate(float(rng.uniform(-8, 8)),
                                                         resample=Image.Resampling.BILINEAR))
        keep = float(rng.uniform(0.85, 0.95))
        width, height = image.size
        box = (int(width * (1 - keep) / 2), int(height * (1 - keep) / 2),
               int(width * (1 + keep) / 2), int(height * (1 + keep) / 2))
        yield f"{name} cropped", np.asarray(image.crop(box))
        gamma = 0.7 if rng.random() < 0.5 else 1.5
        yield f"{name} gamma {gamma}", (255 * (pixels / 255.0) ** gamma).astype(np.uint8)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=60)
        yield f"{name} JPEG", np.asarray(Image.open(buffer))


def through_loader(array: np.ndarray, folder: Path, name: str) -> tuple[np.ndarray, bool] | str:
    """Save as PNG and read back with load_image: (pixels, colour), or the refusal."""
    from edge_agent.imaging import load_image
    from shared.errors import InputImageError

    path = folder / (name.replace(" ", "_").replace("/", "_") + ".png")
    Image.fromarray(array).save(path)
    try:
        image = load_image(path)
    except InputImageError as exc:
        return f"refused by load_image: {exc}"
    return image.pixels, image.source_was_colour
