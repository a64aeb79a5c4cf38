"""The one image-reference module: digests, the policy's pinned form, and Docker's grammar."""

from __future__ import annotations

import pytest

from sovereign_hub.images.reference import (
    DIGEST,
    PINNED,
    ImageReferenceError,
    Reference,
    digest_of,
    require_pinned,
)

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "digest"),
    [
        (f"quay.io/jupyter/base-notebook@{D}", D),
        (f"registry.example:5000/team/img@{D}", D),
        ("quay.io/jupyter/base-notebook:2026.11", ""),
        ("", ""),
    ],
)
def test_digest_of(image, digest):
    assert digest_of(image) == digest


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (f"quay.io/jupyter/base-notebook@{D}", None),
        (f"registry.example:5000/team/img@{D}", None),
        ("quay.io/jupyter/base-notebook@sha256:abc", "image_digest"),
        (f"quay.io/jupyter/base-notebook@{D.upper()}", "image_digest"),
        (f"quay.io/jupyter/base-notebook:2026.11@{D}", "image_tag_and_digest"),
        (f"base-notebook@{D}", "image_name"),
        ("quay.io/jupyter/base-notebook:2026.11", "image_tag"),
        ("quay.io/jupyter/base-notebook", "image_tag"),
    ],
)
def test_require_pinned_names_the_problem(value, kind):
    if kind is None:
        assert require_pinned(value) == value
        assert PINNED.match(value)
        return
    with pytest.raises(ImageReferenceError) as error:
        require_pinned(value)
    assert error.value.kind == kind
    assert repr(value) in str(error.value)


def test_a_parsed_pinned_reference_agrees_with_the_policy_form():
    text = f"quay.io/jupyter/base-notebook@{D}"
    ref = Reference.parse(text)
    assert ref.digest == digest_of(text)
    assert DIGEST.match(ref.digest)
    assert ref.pinned(ref.digest) == require_pinned(text)
