"""The patch interaction's pure core (FHIR R4 http.html#patch): JSON Patch and FHIRPath Patch.

Both take a resource's JSON and a patch document and return a new dict, never changing the
input. A malformed patch document raises ``Invalid`` (400); one that is well-formed but cannot
apply raises ``Unprocessable`` (422), naming the failing operation by its index.
"""

from resources.storage.patch.fhirpath_patch import apply_fhirpath_patch
from resources.storage.patch.json_patch import apply_json_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
