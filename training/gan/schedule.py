"""The progressive growing schedule: which resolution trains, and how far the
newest layer is faded in, after a given number of real images shown."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigurationError


@dataclass(frozen=True)
class Stage:
    """Where training stands: current resolution, its index, the fade-in weight
    ``alpha`` of the newest block (1 = fully in) and whether it is fading."""

    resolution: int
    level: int
    alpha: float
    fading: bool


@dataclass(frozen=True)
class GrowthSchedule:
    """4 px first, then each doubling fades in over ``images_per_phase`` images and
    trains stable for as many more; the last resolution then trains until the end.

    With resolutions (4, 8, 16) and 100 images per phase: 0-99 stable 4 px,
    100-199 fade 8 px, 200-299 stable 8 px, 300-399 fade 16 px, 400+ stable 16 px.
    """

    resolutions: tuple[int, ...]
    images_per_phase: int

    def __post_init__(self) -> None:
        if not self.resolutions or self.resolutions[0] != 4:
            raise ConfigurationError("growth starts at 4 px")
        for low, high in zip(self.resolutions, self.resolutions[1:], strict=False):
            if high != 2 * low:
                raise ConfigurationError(f"resolutions must double: {self.resolutions}")
        if self.images_per_phase < 1:
            raise ConfigurationError("images_per_phase must be positive")

    @property
    def growth_images(self) -> int:
        """Images shown until the final resolution is fully faded in and trained one phase."""
        return self.images_per_phase * (2 * len(self.resolutions) - 1)

    def at(self, images_seen: int) -> Stage:
        """The stage after ``images_seen`` real images."""
        phase = images_seen // self.images_per_phase
        if phase == 0:
            return Stage(self.resolutions[0], 0, 1.0, False)
        level = min((phase + 1) // 2, len(self.resolutions) - 1)
        fading = phase % 2 == 1 and (phase + 1) // 2 <= len(self.resolutions) - 1
        if fading:
            alpha = (images_seen - phase * self.images_per_phase) / self.images_per_phase
            return Stage(self.resolutions[level], level, alpha, True)
        return Stage(self.resolutions[level], level, 1.0, False)
