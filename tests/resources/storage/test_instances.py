"""The instance file store: UID-keyed paths that cannot escape the store, atomic and idempotent
puts, nothing left behind by a failed write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resources.errors import Invalid, NotFound
from resources.storage.instances import InstanceStore, is_uid


def test_put_open_exists_key(tmp_path):
    store = InstanceStore(tmp_path)
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert not store.exists(uid)
    first = store.put(uid, b"DICM-one")
    assert first.created and first.size == 8
    assert store.exists(uid) and store.key(uid) == first.key
    path = tmp_path / first.key  # the folder backend: the same layout as before the blob store
    assert path.is_relative_to(tmp_path / "dicom") and path.name == f"{uid}.dcm"
    again = store.put(uid, [b"DICM", b"-two"])  # re-sending replaces, atomically
    assert not again.created and again.key == first.key
    with store.open(uid) as f:
        assert f.read() == b"DICM-two"
    assert [p.name for p in path.parent.iterdir()] == [f"{uid}.dcm"]
    with pytest.raises(NotFound):
        store.open("1.2.3")


@pytest.mark.parametrize(
    "bad",
    ["", "../../etc/passwd", "1.2.3/4", "1..2", "1.2.", "1", "1.2-a", ".1.2", "1." + "2" * 64],
)
def test_bad_uids_are_refused(tmp_path, bad):
    store = InstanceStore(tmp_path)
    with pytest.raises(Invalid):
        store.key(bad)
    with pytest.raises(Invalid):
        store.put(bad, b"x")


@pytest.mark.parametrize("lenient", ["01.2", "1.2.a", "1.2.840.0113654.2.70.1.A3F"])
def test_unambiguous_non_standard_uids_are_stored_as_sent(tmp_path, lenient):
    """Leading zeros, hexadecimal digits: not PS3.5 §9.1, but what equipment sends (the ingest
    notes them on the ImagingStudy); still a plain file name."""
    from resources.storage.instances import is_lenient_uid, is_uid

    store = InstanceStore(tmp_path)
    assert is_lenient_uid(lenient) and not is_uid(lenient)
    stored = store.put(lenient, b"DICM")
    assert stored.key.endswith(f"/{lenient}.dcm") and (tmp_path / stored.key).is_relative_to(
        store.root
    )
    with store.open(lenient) as f:
        assert f.read() == b"DICM"


def test_a_failed_write_leaves_nothing(tmp_path):
    store = InstanceStore(tmp_path)
    uid = "1.2.3.4"
    store.put(uid, b"old")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"new-but-"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        store.put(uid, chunks())
    assert store.read(uid) == b"old"  # the previous version is intact
    assert [p.name for p in (tmp_path / store.key(uid)).parent.iterdir()] == ["1.2.3.4.dcm"]


@given(st.lists(st.integers(min_value=0, max_value=10**8), min_size=2, max_size=8))
def test_uid_grammar(parts):
    uid = ".".join(str(p) for p in parts)
    assert is_uid(uid) == (len(uid) <= 64)
    assert not is_uid(uid + ".")
    assert not is_uid("0" + uid) or uid.startswith(".")
