"""tools.release: build every shipped target for amd64 and arm64, push each under
the tag scheme as one OCI image index, sign every manifest, and push each image's
SBOMs and signed provenance beside it: `python -m tools.release --help`."""

from __future__ import annotations


class ReleaseError(RuntimeError):
    """A release step failed or was refused; the message says which and why."""
