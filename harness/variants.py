"""The image's variants: one Dockerfile, built for each Python with build arguments only.

The first is the default: its values are the Dockerfile's own ARG defaults (a
test keeps the two equal), so `docker build .` builds it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass

# Debian's architecture names, as .ci/base-image and the platforms (linux/arm64) spell them.
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Variant:
    name: str  # the tags' suffix, as in 1.2.0-py3.13
    suite: str  # the Debian release its base image, Python and Nginx come from
    python: str
    nginx: str
    # The default image's size may not grow past these (bytes): uncompressed as
    # the engine reports it, and gzip -6 of `save`.
    max_size: int
    max_compressed: int

    @property
    def base_image(self) -> str:
        """The base as a registry names it; .ci/base-image makes it locally."""
        return f"debian:{self.suite}-slim"

    def local_base(self, architecture: str) -> str:
        """The base .ci/base-image makes for an architecture (no registry is reachable):
        the host's under the registry's name, another's as localhost/...-ARCH."""
        if architecture == ARCHITECTURES.get(platform.machine(), platform.machine()):
            return self.base_image
        return f"localhost/debian:{self.suite}-slim-{architecture}"

    @property
    def build_args(self) -> dict[str, str]:
        return {"BASE_IMAGE": self.base_image, "PYTHON_VERSION": self.python,
                "NGINX_VERSION": self.nginx}


VARIANTS = (
    # Debian stable. Issue #3's 35 MB, and for its unmet 15 MB compressed, the
    # size measured in the README.
    Variant("py3.13", "trixie", "3.13", "1.26", 35_000_000, 16_700_000),
    # Debian testing: the newer Python and Nginx alone add 3.5 MB; compressed,
    # the size measured.
    Variant("py3.14", "forky", "3.14", "1.30", 38_000_000, 18_700_000),
)
DEFAULT = VARIANTS[0]


def variant(name: str) -> Variant:
    """The variant by its name (py3.13); ValueError for another."""
    for candidate in VARIANTS:
        if candidate.name == name:
            return candidate
    raise ValueError(f"no variant {name!r}: expected one of "
                     + ", ".join(v.name for v in VARIANTS))


def chosen(environ: Mapping[str, str] = os.environ) -> Variant:
    """The variant the image layers build and run: VARIANT (py3.14), or the default."""
    return variant(environ.get("VARIANT", "").strip() or DEFAULT.name)
