"""Absolute ``Attachment.url`` values in exported resources (Bulk Data Access 2.0.0, export.html,
"Attachments": the url element "SHALL be an absolute url"): a relative one as stored
(``Binary/123``) is resolved against the FHIR base in the copy that is written out; the stored
resource is not changed.

Every Attachment is found through the R4 type model (:mod:`resources.validation.schema`), not a
list of paths: the walk follows each element's R4 type, so ``DocumentReference.content.attachment``,
``Media.content``, ``DiagnosticReport.presentedForm``, ``Patient.photo``, an
``Extension.valueAttachment`` and the Attachments of contained resources are all reached, while
a ``url`` element of anything else (``Extension.url``, ``ValueSet.url``) is left alone.

Export writes the stored JSON text as it is, undecoded; only a resource whose text has a
``"url"`` member with a value that does not start with a URI scheme is decoded and walked.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson

from resources.validation.schema import R4Schema, schema

# A "url" member whose value does not begin with a scheme (RFC 3986: ALPHA *( ALPHA / DIGIT /
# "+" / "-" / "." ) ":"): the only texts that may hold a relative Attachment.url.
_MAYBE_RELATIVE = re.compile(r'"url"\s*:\s*"(?![A-Za-z][A-Za-z0-9+.\-]*:)')


def absolute_url(url: str, base: str) -> str:
    """``url`` resolved against the FHIR ``base`` (RFC 3986 §5): ``Binary/1`` becomes
    ``[base]/Binary/1``; an absolute one is returned as it is."""
    if not url or urlsplit(url).scheme:
        return url
    return urljoin(base.rstrip("/") + "/", url)


def with_absolute_attachments(content: str | dict, base: str) -> str | dict:
    """``content`` (a resource as JSON text or decoded) with every relative ``Attachment.url``
    made absolute against ``base``: the text as it is when it has none, else the decoded
    resource, changed (a decoded one given is changed in place)."""
    if isinstance(content, str):
        if _MAYBE_RELATIVE.search(content) is None:
            return content
        resource = orjson.loads(content)
        return resource if _absolutize(resource, base) else content
    _absolutize(content, base)
    return content


def _absolutize(resource: Any, base: str) -> bool:
    """Make the Attachment urls in ``resource`` absolute, in place; whether any changed."""
    if not isinstance(resource, dict):
        return False
    model = schema()
    kind = resource.get("resourceType")
    if kind not in model.resource_types:
        return False
    return _walk(model, resource, str(kind), base)


def _walk(model: R4Schema, node: dict, definition: str, base: str) -> bool:
    changed = False
    if definition == "Attachment":
        url = node.get("url")
        if isinstance(url, str) and (resolved := absolute_url(url, base)) != url:
            node["url"] = resolved
            changed = True
    elements = model.elements(definition)
    for key, value in node.items():
        spec = elements.get(key)
        if spec is None or spec.primitive:
            continue
        for item in value if isinstance(value, list) else (value,):
            if not isinstance(item, dict):
                continue
            item_type = spec.type
            if item_type == "Resource":  # contained, Bundle.entry.resource, Parameters...
                kind = item.get("resourceType")
                if kind not in model.resource_types:
                    continue
                item_type = str(kind)
            changed |= _walk(model, item, item_type, base)
    return changed
